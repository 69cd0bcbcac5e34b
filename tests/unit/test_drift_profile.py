"""shared.drift.profile: merged chunk profiles equal the whole-data profile (property tests over seeded random
tables and chunkings), merge algebra, JSON, hand-made edge cases, the bottom-k sample, baseline layout."""

from __future__ import annotations

import itertools
import json
import warnings
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from shared.drift.profile import (
    PROFILE_FORMAT,
    PROFILE_VERSION,
    CategoricalStats,
    FeatureSpec,
    NumericStats,
    Profile,
    row_keys,
    specs_from_baseline,
)
from training.data import CATEGORICAL, NUMERIC, generate
from training.train import baseline_profile

NUM = (*NUMERIC, "probability")
SEEDS = range(24)
PIN_R1, PIN_EMPTY = 9960610437098605656, 5175422118172560090  # row_keys(["r00000001", ""])
PIN_POS0, PIN_POS1 = 17034737956169125990, 3065699613715785249  # row_keys(offset=0, rows=2, salt="f")


def _table(rows: int, seed: int, drift: float = 0.0, *, nulls: bool = True) -> pa.Table:
    """Generated rows plus a ``probability`` column; nulls, NaN and inf injected into some columns."""
    t = generate(rows, seed=seed, drift=drift, include_label=False)
    x01 = t.column("x01").to_numpy()
    t = t.append_column("probability", pa.array(1 / (1 + np.exp(-x01))))
    if not nulls or rows == 0:
        return t
    rng = np.random.default_rng([seed, 17])
    for name, rate in (("x03", 0.05), ("x07", 0.5), ("probability", 0.02), ("channel", 0.1)):
        column = t.column(name).combine_chunks()
        mask = rng.random(rows) < rate
        t = t.set_column(t.schema.get_field_index(name), name, pa.array(column.to_pylist(), mask=mask))
    x05 = t.column("x05").to_numpy().copy()
    x05[rng.random(rows) < 0.03] = np.nan
    x05[rng.random(rows) < 0.01] = np.inf
    return t.set_column(t.schema.get_field_index("x05"), "x05", pa.array(x05))


@cache
def _baseline(sample_size: int = 256) -> Profile:
    return Profile.baseline(
        _table(4000, seed=99), numeric=NUM, categorical=CATEGORICAL, sample_size=sample_size
    )


def _split(rows: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Random chunk boundaries, empty chunks included."""
    cuts = np.sort(rng.integers(0, rows + 1, rng.integers(0, 9)))
    bounds = [0, *cuts.tolist(), rows]
    return list(itertools.pairwise(bounds))


def _merge_all(profiles: list[Profile], rng: np.random.Generator) -> Profile:
    """Merge in a random order along a random tree."""
    items = list(profiles)
    rng.shuffle(items)  # type: ignore[arg-type]
    while len(items) > 1:
        i = int(rng.integers(len(items) - 1))
        items[i : i + 2] = [items[i].merge(items[i + 1])]
    return items[0]


def _assert_same(a: Profile, b: Profile, rel: float = 1e-9) -> None:
    """Exactly equal, except mean/m2 within ``rel`` (relative to the data's scale for values near 0)."""
    ja, jb = a.to_json(), b.to_json()
    for name, fa in ja["features"].items():
        fb = jb["features"][name]
        if fa["kind"] != "numeric":
            continue
        scale = max(abs(fa["min"] or 0.0), abs(fa["max"] or 0.0), 1.0)
        ma, mb, m2a, m2b = fa.pop("mean"), fb.pop("mean"), fa.pop("m2"), fb.pop("m2")
        assert abs(ma - mb) <= rel * (max(abs(ma), abs(mb)) + 1e-3 * scale), (name, ma, mb)
        assert abs(m2a - m2b) <= rel * (max(m2a, m2b) + 1e-6 * fa["count"] * scale**2), (name, m2a, m2b)
        for side in ("under_sum", "over_sum"):  # sums of the outer cells: to rounding, like the moments
            sa, sb = fa.pop(side, 0.0), fb.pop(side, 0.0)
            assert abs(sa - sb) <= rel * (max(abs(sa), abs(sb)) + 1e-3 * scale), (name, side, sa, sb)
    assert ja == jb


@pytest.mark.parametrize("drift", [0.0, 0.7])
def test_profile_merged_from_random_chunks_equals_the_whole(drift: float) -> None:
    for seed in SEEDS:
        rng = np.random.default_rng([seed, int(drift * 10)])
        rows = int(rng.integers(0, 3000))
        table = _table(rows, seed=seed, drift=drift)
        k = int(rng.choice([1, 16, 300, 5000]))  # 5000 > rows: samples that never fill up
        blank = _baseline().blank(seed=seed)
        blank.sample_size = k
        whole = blank.blank(seed=seed).update(table)
        rebatched = blank.blank(seed=seed)
        for batch in table.to_batches(max_chunksize=int(rng.integers(1, 700))):
            rebatched.update(batch)
        chunks = [blank.blank(seed=seed).update(table.slice(a, b - a)) for a, b in _split(rows, rng)]
        merged = _merge_all(chunks, rng)
        _assert_same(merged, whole)
        _assert_same(rebatched, whole)
        assert whole.rows == rows and merged.features["x07"].sample_values.size <= k  # type: ignore[union-attr]
        if drift == 0:
            assert whole.features["region"].other == 0  # type: ignore[union-attr]


def test_absorbing_chunks_in_place_equals_merging_them() -> None:
    """``Profile.absorb`` (the compactor's in-place fold) gives exactly ``merge``'s profile, samples included,
    and leaves the absorbed profile as it was."""
    for seed in range(6):
        rng = np.random.default_rng(seed)
        table = _table(int(rng.integers(1, 3000)), seed=seed, drift=0.5)
        blank = _baseline().blank(seed=seed)
        blank.sample_size = int(rng.choice([0, 16, 300]))
        chunks = [blank.blank(seed=seed).update(table.slice(a, b - a)) for a, b in _split(table.num_rows, rng)]
        merged = chunks[0]
        for chunk in chunks[1:]:
            merged = merged.merge(chunk)
        before = [c.to_json() for c in chunks[1:]]
        folded = Profile.from_json(chunks[0].to_json())
        for chunk in chunks[1:]:
            assert folded.absorb(chunk) is folded
        assert folded == merged
        assert [c.to_json() for c in chunks[1:]] == before


def test_duplicate_ids_still_merge_exactly() -> None:
    """Rows sharing an id share a sampling key; (key, value) order keeps the sample chunking-independent."""
    for seed in range(12):
        rng = np.random.default_rng(seed)
        table = _table(1500, seed=seed)
        ids = pa.array([f"id{i}" for i in rng.integers(0, 40, table.num_rows)])
        table = table.set_column(0, "id", ids)
        blank = _baseline(32).blank(seed=seed)
        merged = _merge_all([blank.blank().update(table.slice(a, b - a)) for a, b in _split(1500, rng)], rng)
        _assert_same(merged, blank.blank().update(table))


def test_positions_with_a_salt_identify_rows_when_there_is_no_id_column() -> None:
    table = _table(2000, seed=5).drop_columns(["id"])
    blank = _baseline(64).blank(seed=1)
    whole = blank.blank(seed=1).update(table, keys=row_keys(offset=0, rows=2000, salt="blob://in/a.csv"))
    chunks = [
        blank.blank(seed=1).update(
            table.slice(a, b - a), keys=row_keys(offset=a, rows=b - a, salt="blob://in/a.csv")
        )
        for a, b in _split(2000, np.random.default_rng(3))
    ]
    _assert_same(_merge_all(chunks, np.random.default_rng(4)), whole)
    other = blank.blank(seed=1).update(table, keys=row_keys(offset=0, rows=2000, salt="blob://in/b.csv"))
    assert not np.array_equal(other.features["x01"].sample_values, whole.features["x01"].sample_values)
    with pytest.raises(ValueError, match="no 'id' column"):
        blank.blank().update(table)
    with pytest.raises(ValueError, match="uint64"):
        blank.blank().update(table, keys=np.arange(2000))


def test_merge_is_commutative_exactly_and_associative() -> None:
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        start, parts = 0, []
        for _ in range(3):
            n = int(rng.integers(0, 800))
            part = _table(n, seed=seed, drift=float(rng.choice([0.0, 0.7])))
            ids = pa.array([f"r{start + i}" for i in range(n)], pa.string())
            parts.append(_baseline(50).blank(seed=2).update(part.set_column(0, "id", ids)))
            start += n
        a, b, c = parts
        assert a.merge(b) == b.merge(a)  # bit for bit, moments included
        _assert_same(a.merge(b).merge(c), a.merge(b.merge(c)))
        _assert_same(a.merge(c).merge(b), c.merge(b).merge(a))
        blank = a.blank(seed=2)
        assert a.merge(blank) == a == blank.merge(a)


def test_json_round_trip_is_exact() -> None:
    p = _baseline().blank(model_version="7", window=("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"))
    p.update(_table(3000, seed=3, drift=0.7))
    d = p.to_json()
    assert (d["format"], d["version"], d["model_version"], d["rows"]) == (
        PROFILE_FORMAT,
        PROFILE_VERSION,
        "7",
        3000,
    )
    back = Profile.from_json(json.loads(json.dumps(d, allow_nan=False)))
    assert back == p and back.to_json() == d and back.window == p.window
    x = back.features["x01"]
    assert (
        isinstance(x, NumericStats) and x.sample_keys.dtype == np.uint64 and x.sample_values.flags.writeable
    )
    assert back.update(_table(10, seed=4)).rows == 3010  # a restored profile keeps working
    _assert_same(Profile.from_json(json.loads(json.dumps(_baseline().to_json()))), _baseline())
    with pytest.raises(ValueError, match=r"not a scorehook\.profile v1 or v2"):
        Profile.from_json({**d, "version": 3})


def test_numeric_bins_out_of_range_and_missing_on_hand_made_data() -> None:
    p = Profile([FeatureSpec("x", "numeric", tuple(float(i) for i in range(11)))], sample_size=3)
    values = [-1.0, 0.0, 5.0, 10.0, 10.5, float("nan"), None, float("inf"), -float("inf"), 3.0, 9.999]
    p.update(pa.table({"x": values}), keys=row_keys(offset=0, rows=len(values)))
    x = p.features["x"]
    assert isinstance(x, NumericStats)
    assert x.counts.tolist() == [2, 0, 0, 1, 0, 1, 0, 0, 0, 3]  # [-inf,1) [1,2) ... [9,+inf)
    finite = np.array([-1.0, 0.0, 5.0, 10.0, 10.5, 3.0, 9.999])
    inner = np.arange(1.0, 10.0)  # the rule of training.train.baseline_profile
    assert (
        x.counts.tolist() == np.bincount(np.searchsorted(inner, finite, side="right"), minlength=10).tolist()
    )
    assert (x.count, x.missing, x.out_of_range, x.min, x.max) == (7, 4, 2, -1.0, 10.5)
    assert x.mean == pytest.approx(finite.mean(), rel=1e-12) and x.std() == pytest.approx(
        finite.std(), rel=1e-12
    )
    assert x.std(ddof=1) == pytest.approx(finite.std(ddof=1), rel=1e-12)
    assert x.sample_values.size == 3 and set(x.sample_values) <= set(finite)
    edge = Profile([FeatureSpec("x", "numeric", (1.0, 1.0, 1.0))]).update(
        pa.table({"x": [0.0, 1.0, 2.0]}), keys=row_keys(offset=0, rows=3)
    )  # a constant baseline feature: equal edges
    assert (edge.features["x"].counts.tolist(), edge.features["x"].out_of_range) == ([1, 2], 2)  # type: ignore[union-attr]


def test_categorical_vocabulary_other_and_missing_on_hand_made_data() -> None:
    spec = FeatureSpec("c", "categorical", vocabulary=("a", "b"))
    values = ["a", "z", "b", None, "a", "zz", "z"]
    plain = Profile([spec]).update(pa.table({"c": values}), keys=row_keys(offset=0, rows=7))
    stats = plain.features["c"]
    assert (stats.counts.tolist(), stats.other, stats.missing, stats.rows) == ([2, 1], 3, 1, 7)  # type: ignore[union-attr]
    encoded = pc.dictionary_encode(pa.array(values))
    same = Profile([spec]).update(pa.table({"c": encoded}), keys=row_keys(offset=0, rows=7))
    assert same == plain
    repeated = pa.DictionaryArray.from_arrays(
        pa.array([0, 1, 2, None, 3, 4, 1]), pa.array(["a", "z", "b", "a", "zz"])
    )
    assert Profile([spec]).update(pa.table({"c": repeated}), keys=row_keys(offset=0, rows=7)) == plain
    ints = Profile([FeatureSpec("c", "categorical", vocabulary=("1", "2"))]).update(
        pa.table({"c": [1, 2, 2, 3, None]}), keys=row_keys(offset=0, rows=5)
    )
    assert (ints.features["c"].counts.tolist(), ints.features["c"].other) == ([1, 2], 1)  # type: ignore[union-attr]


@pytest.mark.parametrize("dtype", [pa.float64(), pa.float32()])  # float32: what ONNX models read
@pytest.mark.parametrize("seed", range(4))
def test_grid_features_counted_together_equal_each_counted_alone(seed, dtype, monkeypatch) -> None:
    import shared.drift.profile as profile

    rng = np.random.default_rng(seed)
    base = Profile.baseline(
        pa.table({f"x{i}": rng.normal(i, 1 + i, 5000) for i in range(6)}), numeric=[f"x{i}" for i in range(6)]
    )
    batches = []
    for b in range(4):
        cols = {f"x{i}": rng.normal(i + 0.3 * b, (1 + i) * (1 + 0.5 * b), 700) for i in range(6)}
        cols["x1"][:: 50 + b] = np.nan if b % 2 else np.inf  # a column with missing or infinite values
        cols["x2"][:3] = [1e300, -1e300, 3e38]  # far beyond the grid: the overflow and underflow cells
        cols["x3"][:] = 7.25  # constant
        if dtype == pa.float32():
            cols["x2"][:3] = [3e38, -3e38, 1e30]
        batches.append(pa.record_batch({k: pa.array(v, dtype) for k, v in cols.items()}))

    def profiled(group: int) -> dict:
        monkeypatch.setattr(profile, "_GRID_GROUP", group)
        p = base.blank(model_version="1")
        assert p.sample_size == 0 and all(s.cells is not None for s in p.features.values())  # type: ignore[union-attr]
        for batch in batches:
            p.update(batch)
        return p.to_json()

    together, alone = profiled(2), profiled(10**6)
    assert together == alone  # bit for bit: cells, sums, moments
    x2 = Profile.from_json(together).features["x2"]
    assert x2.cells[0] >= 4 and x2.cells[-1] >= 8 and x2.out_of_range >= 12  # type: ignore[union-attr]


@pytest.mark.parametrize("equal_grids", [True, False])
def test_cells_counted_into_the_profiles_one_array_equal_cells_of_features_with_arrays_of_their_own(equal_grids) -> None:
    """A blank profile's grid features count into views of one array (one addition per batch, one cast to
    pack); a parsed or merged profile's features have arrays of their own and take the per-feature paths.
    Cells, sums and the JSON are the same bit for bit either way, whether the batch has every grid feature,
    some of them, or a column with missing values."""
    import shared.drift.profile as profile

    rng = np.random.default_rng(11)
    if equal_grids:
        base = Profile.baseline(pa.table({f"x{i}": rng.normal(i, 1 + i, 4000) for i in range(5)}), numeric=[f"x{i}" for i in range(5)])
    else:  # cells of different counts: packed through reduceat
        specs = [FeatureSpec(f"x{i}", "numeric", (0.0, 1.0), grid=(-1.0, 0.5 / (i + 1), 8 * (i + 1))) for i in range(5)]
        base = Profile(specs, sample_size=0)
    blank = base.blank(model_version="1")
    joint = blank._cells
    assert all(blank.features[f"x{i}"].cells.base is joint.buffer for i in range(5))  # type: ignore[union-attr]
    parsed = Profile.from_json(base.blank(model_version="1").to_json())
    merged = base.blank(model_version="1").merge(base.blank(model_version="1"))
    assert parsed.features["x0"].cells.base is not joint.buffer  # type: ignore[union-attr]
    batches = []
    for b in range(3):
        cols = {f"x{i}": rng.normal(i + 0.4 * b, 1 + i, 900) for i in range(5)}
        cols["x4"][:2] = [1e9, -1e9]  # the outer cells and their sums
        batches.append(pa.record_batch(cols))
    batches.append(batches[0].select(["x1", "x3"]))  # some of the grid features
    with_nan = {f"x{i}": rng.normal(i, 1, 900) for i in range(5)}
    with_nan["x2"][7] = np.nan
    batches.append(pa.record_batch(with_nan))
    for p in (blank, parsed, merged):
        for batch in batches:
            p.update(batch)
    assert blank.to_json() == parsed.to_json() == merged.to_json()
    assert blank.to_json()["features"]["x4"]["cells"] == profile._pack(blank.features["x4"].cells)  # type: ignore[union-attr]
    x4 = blank.features["x4"]
    assert x4.cells[0] >= 1 and x4.under_sum <= -1e9 and x4.over_sum >= 1e9  # type: ignore[union-attr]
    assert Profile.from_json(blank.to_json()) == blank


def test_a_big_batch_counted_feature_by_feature_gives_the_cells_of_small_batches_counted_together() -> None:
    import shared.drift.profile as profile

    rng = np.random.default_rng(5)
    base = Profile.baseline(pa.table({f"x{i}": rng.normal(i, 1, 4000) for i in range(4)}), numeric=[f"x{i}" for i in range(4)])
    rows = 5 * profile._GRID_GROUP_ROWS
    cols = {f"x{i}": rng.normal(i + 0.2, 1.5, rows).astype(np.float32) for i in range(4)}
    cols["x3"][:5] = [3e38, -3e38, 1e30, -1e30, 40.0]  # the overflow and underflow cells
    big = pa.record_batch({k: pa.array(v) for k, v in cols.items()})
    whole = base.blank(model_version="1").update(big)
    pieces = base.blank(model_version="1")
    for start in range(0, rows, 1000):  # batches small enough for the grouped path
        pieces.update(big.slice(start, 1000))
    for name in cols:
        a, b = whole.features[name], pieces.features[name]
        assert a.cells.tolist() == b.cells.tolist() and a.cells.sum() == rows  # type: ignore[union-attr]
        assert (a.count, a.missing, a.out_of_range, a.min, a.max) == (b.count, b.missing, b.out_of_range, b.min, b.max)  # type: ignore[union-attr]
        assert a.under_sum == pytest.approx(b.under_sum) and a.over_sum == pytest.approx(b.over_sum)  # type: ignore[union-attr]


@pytest.mark.parametrize("distinct", [3, 40, 300, 2000])
def test_a_categorical_batch_counts_the_same_through_the_dict_and_the_kernel_paths(distinct, monkeypatch) -> None:
    import shared.drift.profile as profile

    rng = np.random.default_rng(distinct)
    vocabulary = tuple(f"v{i}" for i in range(0, 2 * distinct, 2)[:256])  # half the values seen are unknown
    drawn = rng.zipf(1.3, 3000) % distinct
    values = [None if d == 0 else f"v{d}" for d in drawn]
    columns = [
        pa.array(values),
        pc.dictionary_encode(pa.array(values)),
        pa.DictionaryArray.from_arrays(  # a dictionary with unused entries, and a repeated one
            pa.array([None if d == 0 else int(d) for d in drawn], pa.int32()),
            pa.array([f"v{i}" for i in range(distinct)] + ["unused", "v1"]),
        ),
    ]

    def counted(few: int) -> list[tuple]:
        monkeypatch.setattr(profile, "_FEW_VALUES", few)
        states = []
        for column in columns:
            stats = CategoricalStats.empty(FeatureSpec("c", "categorical", vocabulary=vocabulary))
            for start in range(0, len(column), 700):  # batches: the sketch merges across them
                stats.add(column[start : start + 700])
            states.append((stats.counts.tolist(), stats.other, stats.missing, stats.tail()))
        return states

    by_dict, by_kernels = counted(10**6), counted(0)
    assert by_dict == by_kernels
    counts, other, missing, tail = by_dict[0]
    assert sum(counts) + other + missing == 3000 and missing == int(np.sum(drawn == 0))
    assert "unused" not in tail and all(c > 0 for c in tail.values())
    assert by_dict[1] == by_dict[0] == by_dict[2]


def test_unseen_categories_and_out_of_range_in_drifted_data() -> None:
    base, table = _baseline(), _table(20000, seed=8, drift=1.0)
    cur = base.blank().update(table)
    offshore = pc.sum(pc.equal(table.column("region"), "offshore")).as_py()
    assert cur.features["region"].other == offshore > 0  # type: ignore[union-attr]
    assert base.features["region"].other == 0  # type: ignore[union-attr]
    x02 = table.column("x02").to_numpy()
    lo, hi = base.specs[1].edges[0], base.specs[1].edges[-1]
    assert cur.features["x02"].out_of_range == np.count_nonzero((x02 < lo) | (x02 > hi)) > 0  # type: ignore[union-attr]


def test_sample_is_the_bottom_k_of_all_rows_and_bounded() -> None:
    table = _table(3000, seed=11)
    full = _baseline().blank(seed=3)
    full.sample_size = 10**6
    full.update(table)
    for k in (0, 1, 7, 500, 2999, 4000):
        small = full.blank(seed=3)
        small.sample_size = k
        small.update(table)
        for name in NUM:
            s, f = small.features[name], full.features[name]
            assert isinstance(s, NumericStats) and isinstance(f, NumericStats)
            assert s.sample_values.size == min(k, f.count) == s.sample_keys.size
            assert np.array_equal(s.sample_keys, f.sample_keys[:k])
            assert np.array_equal(s.sample_values, f.sample_values[:k])
    assert np.all(np.diff(full.features["x01"].sample_keys.astype(np.float64)) >= 0)  # type: ignore[union-attr]


def test_sample_is_uniform_over_rows() -> None:
    """Positions 0..999 as values, k = 100, 400 seeds: every row is kept about 40 times, no position bias."""
    table = pa.table({"x": np.arange(1000, dtype=np.float64)})
    hits = np.zeros(1000)
    for seed in range(400):
        p = Profile([FeatureSpec("x", "numeric")], sample_size=100, seed=seed)
        p.update(table, keys=row_keys(offset=0, rows=1000, salt="file"))
        hits[p.features["x"].sample_values.astype(int)] += 1  # type: ignore[union-attr]
    assert hits.sum() == 400 * 100
    assert hits.min() >= 15 and hits.max() <= 70  # Binomial(400, 0.1): mean 40, sd 6
    assert abs(hits[:500].sum() - hits[500:].sum()) < 0.05 * hits.sum()
    dispersion = ((hits - 40) ** 2 / 36).sum()  # about 1000 +- 45 for independent uniform inclusion
    assert 850 < dispersion < 1150


def test_empty_batches_and_empty_profiles() -> None:
    base = _baseline()
    empty = base.blank()
    assert empty.update(_table(0, seed=1)).rows == 0 and empty == base.blank()
    p = base.blank().update(_table(500, seed=1))
    before = p.to_json()
    p.update(_table(0, seed=1))
    p.update(pa.RecordBatch.from_pylist([], schema=_table(0, seed=1).schema))
    p.update(pa.record_batch({"x01": pa.array([], pa.float64())}))  # no id column needed without rows
    assert p.to_json() == before
    assert base.blank().merge(base.blank()) == base.blank()
    x = empty.features["x01"]
    assert isinstance(x, NumericStats) and (x.count, x.min, x.std(), x.sample_values.size) == (
        0,
        None,
        None,
        0,
    )
    assert Profile.from_json(json.loads(json.dumps(empty.to_json()))) == empty
    assert Profile([]).update(_table(3, seed=1)).rows == 0


def test_all_null_columns() -> None:
    n = 300
    t = _table(n, seed=2)
    t = t.set_column(t.schema.get_field_index("x09"), "x09", pa.nulls(n, pa.float64()))
    t = t.set_column(t.schema.get_field_index("x10"), "x10", pa.nulls(n))  # type null
    t = t.set_column(t.schema.get_field_index("tier"), "tier", pa.nulls(n, pa.string()))
    p = _baseline().blank().update(t)
    for name in ("x09", "x10"):
        x = p.features[name]
        assert isinstance(x, NumericStats)
        assert (x.count, x.missing, x.min, x.max, x.std(), x.counts.sum(), x.sample_values.size) == (
            0,
            n,
            None,
            None,
            None,
            0,
            0,
        )
    tier = p.features["tier"]
    assert (tier.missing, tier.counts.sum(), tier.other) == (n, 0, 0)  # type: ignore[union-attr]
    merged = p.merge(_baseline().blank().update(_table(100, seed=3)))
    assert merged.features["x09"].count == 100 and merged.features["x09"].missing == n  # type: ignore[union-attr]
    assert Profile.from_json(json.loads(json.dumps(p.to_json(), allow_nan=False))) == p
    # a baseline whose column was all missing: one open bin, every later value is out of range
    base = Profile.baseline(t, numeric=["x09"], categorical=["tier"])
    assert base.specs[0].edges == () and base.specs[1].vocabulary == ()
    cur = base.blank().update(pa.table({"id": ["a", "b"], "x09": [1.0, 2.0], "tier": ["gold", None]}))
    assert (cur.features["x09"].counts.tolist(), cur.features["x09"].out_of_range) == ([2], 2)  # type: ignore[union-attr]
    assert (cur.features["tier"].other, cur.features["tier"].missing) == (1, 1)  # type: ignore[union-attr]


def test_features_missing_from_a_batch_are_left_unchanged() -> None:
    """Inputs and predictions may arrive in different batches; other columns are ignored."""
    t = _table(400, seed=6)
    inputs = t.drop_columns(["probability"])
    outputs = t.select(["id", "probability"]).append_column("model_version", pa.array(["3"] * 400))
    split = _baseline().blank().update(inputs).update(outputs)
    assert split == _baseline().blank().update(t) and split.rows == 400


def test_column_types_do_not_matter() -> None:
    t = _table(700, seed=9, nulls=False)
    cast = t.set_column(1, "x01", pc.cast(t.column("x01"), pa.float32()).cast(pa.float64()))
    f32 = t.set_column(1, "x01", pc.cast(t.column("x01"), pa.float32()))
    narrow, wide = _baseline().blank().update(f32).to_json(), _baseline().blank().update(cast).to_json()
    a, b = narrow["features"].pop("x01"), wide["features"].pop("x01")
    assert narrow == wide  # the other features are untouched
    for key in ("mean", "m2"):  # float32 moments: pairwise float32 sums around a pivot
        assert a.pop(key) == pytest.approx(b.pop(key), rel=1e-5)
    assert a == b  # counts, missing, out of range, min/max and the sample: exact
    enc = t
    for c in CATEGORICAL:
        enc = enc.set_column(enc.schema.get_field_index(c), c, pc.dictionary_encode(enc.column(c)))
    big = t.set_column(0, "id", pc.cast(t.column("id"), pa.large_string()))
    assert _baseline().blank().update(enc) == _baseline().blank().update(t) == _baseline().blank().update(big)


def test_baseline_layout_matches_the_training_profile() -> None:
    t = _table(5000, seed=12)
    t = t.set_column(5, "x05", generate(5000, seed=12).column("x05"))  # no inf: the legacy profile keeps it
    legacy = baseline_profile(t.drop_columns(["probability"]))
    # the version-1 layout (no grid, a sample) is exactly training's; the grid layout counts each fine cell
    # in the coarse bin of its midpoint, so its coarse counts move only by the values next to an edge
    base = Profile.baseline(
        t, numeric=NUM, categorical=CATEGORICAL, bins=10, top_k=20, grid=False, sample_size=2048
    )
    fine = Profile.baseline(t, numeric=NUM, categorical=CATEGORICAL, bins=10, top_k=20)
    for name in NUMERIC:
        x, g = base.features[name], fine.features[name]
        assert isinstance(g, NumericStats) and g.spec.edges == x.spec.edges and g.spec.grid
        assert g.counts.sum() == x.counts.sum() and np.abs(g.counts - x.counts).max() <= 0.02 * x.counts.max()
        assert (g.min, g.max, g.mean, g.m2, g.count) == (x.min, x.max, x.mean, x.m2, x.count)
    for name in NUMERIC:
        b, x = legacy["numeric"][name], base.features[name]
        assert isinstance(x, NumericStats)
        assert list(base.specs[NUM.index(name)].edges) == b["edges"] and x.counts.tolist() == b["counts"]
        assert (x.min, x.max) == (b["min"], b["max"])
        assert x.mean == pytest.approx(b["mean"], rel=1e-9) and x.std() == pytest.approx(b["std"], rel=1e-9)
        assert x.missing / x.rows == pytest.approx(b["missing_rate"], abs=1e-15)
    for name in CATEGORICAL:
        counts = legacy["categorical"][name]["counts"]
        stats = base.features[name]
        assert dict(zip(stats.spec.vocabulary, stats.counts.tolist(), strict=True)) == counts  # type: ignore[union-attr]
    assert base.features["x01"].sample_values.size == 2048 and base.seed != 0  # type: ignore[union-attr]
    # the legacy dict gives the same layout and statistics, without a sample
    from_dict = Profile.from_baseline(legacy)
    assert from_dict.specs == tuple(s for s in base.specs if s.name != "probability")
    for name in ("x01", "x07"):
        a, b2 = from_dict.features[name], base.features[name]
        assert isinstance(a, NumericStats) and isinstance(b2, NumericStats)
        assert (a.counts.tolist(), a.count, a.missing, a.min, a.max) == (
            b2.counts.tolist(),
            b2.count,
            b2.missing,
            b2.min,
            b2.max,
        )
        assert a.std() == pytest.approx(b2.std(), rel=1e-9) and a.sample_values.size == 0
    assert [s.vocabulary for s in specs_from_baseline(legacy, top_k=2)][-3:] == [
        ("north", "south"),
        ("web", "mobile"),
        ("bronze", "silver"),
    ]
    assert (
        from_dict.features["region"].other == 0
        and Profile.from_baseline(legacy, top_k=2).features["region"].other > 0
    )  # type: ignore[union-attr]


def test_merge_refuses_profiles_that_do_not_fit() -> None:
    base = _baseline()
    p = base.blank(model_version="1")
    for other in (
        base.blank(model_version="2"),
        base.blank(seed=5, model_version="1"),
        Profile(base.specs[:3], sample_size=base.sample_size, model_version="1"),
        Profile(base.specs, sample_size=9, model_version="1"),
    ):
        with pytest.raises(ValueError, match="cannot merge"):
            p.merge(other)
    a = base.blank(window=("2026-01-01T00", "2026-01-01T01"))
    b = base.blank(window=("2026-01-01T01", "2026-01-01T02"))
    assert a.merge(b).window == ("2026-01-01T00", "2026-01-01T02") == b.merge(a).window
    assert a.merge(base.blank()).window == a.window


def test_row_keys_are_stable_and_representation_independent() -> None:
    # pinned: stored profiles are merged with new ones, so these values must never change within a version
    assert row_keys(["r00000001", ""]).tolist() == [PIN_R1, PIN_EMPTY]
    assert row_keys(offset=0, rows=2, salt="f").tolist() == [PIN_POS0, PIN_POS1]
    ids = pa.array(["alpha", "b", None, "a-much-longer-identifier-0001", "r00000001"])
    want = row_keys(ids)
    assert want[2] == np.iinfo(np.uint64).max and len(set(want.tolist())) == 5
    assert np.array_equal(row_keys(pa.chunked_array([ids.slice(0, 2), ids.slice(2)])), want)
    assert np.array_equal(row_keys(pc.cast(ids, pa.large_string())), want)
    assert np.array_equal(row_keys(pc.dictionary_encode(ids)), want)
    assert np.array_equal(row_keys(ids.to_pylist()), want)
    assert np.array_equal(row_keys(pa.array(["x", *ids.to_pylist()]).slice(1)), want)
    assert row_keys(["a"], salt="f1")[0] != row_keys(["a"], salt="f2")[0] != row_keys(["a"])[0]
    assert np.array_equal(
        row_keys(offset=10, rows=5, salt=3), row_keys(pa.array(range(10, 15), pa.int32()), salt=3)
    )
    with pytest.raises(TypeError):
        row_keys(pa.array([1.5]))
    with pytest.raises(ValueError):
        row_keys()


def test_integer_labels_count_like_their_strings() -> None:
    spec = FeatureSpec("prediction", "categorical", vocabulary=("0", "1"))
    for values in ([0, 1, 1, 5, 0], [-1, 1, 1, 5, 0], [0, None, 1, 7000, 1]):
        as_int, as_text = CategoricalStats.empty(spec), CategoricalStats.empty(spec)
        as_int.add(pa.array(values, pa.int64()))
        as_text.add(pa.array([None if v is None else str(v) for v in values]))
        assert (as_int.counts.tolist(), as_int.other, as_int.missing) == (
            as_text.counts.tolist(),
            as_text.other,
            as_text.missing,
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_values_land_in_the_outer_cells_with_their_exact_sums(dtype) -> None:
    base = Profile.baseline(pa.table({"x": np.linspace(-1.0, 1.0, 1001)}))
    values = np.array([np.inf, -np.inf, np.nan, 3e38, -3e38, 0.5, 2.0], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning from the grid arithmetic
        x = base.blank().update(pa.table({"x": values})).features["x"]
    assert isinstance(x, NumericStats) and x.cells is not None
    assert (x.count, x.missing, x.out_of_range) == (4, 3, 3)
    assert (x.cells[0], x.cells[-1], x.cells[1:-1].sum()) == (1, 2, 1)
    assert x.under_sum == float(dtype(-3e38)) and x.over_sum == float(dtype(3e38)) + 2.0
