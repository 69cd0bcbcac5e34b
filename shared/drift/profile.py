"""Mergeable data profiles: a fixed layout from the baseline, cheap per-batch updates, exact merges, JSON.

A profile summarises one model version over one time window (or the training data, for the baseline). Its
layout is a tuple of :class:`FeatureSpec`: numeric features get coarse bin edges (the baseline's deciles,
outer bins open) and, in version 2, a fine **grid** of ``cells`` equal cells over the baseline's
[min, max] widened by 10 % each side, sized so that one cell is at most ``GRID_RESOLUTION`` (0.0025)
baseline standard deviations wide (between 256 and 65,536 cells); categorical features a vocabulary (the
baseline's top 256 values) plus "other". Per feature:

- numeric: counts per grid cell, plus one underflow and one overflow cell that keep the exact sum of their
  values (so a far shift's distance is exact); the coarse counts (derived from the cells); ``count``
  (finite values), ``missing`` (null, NaN or +-inf), ``min``/``max``, ``mean``/``m2`` (Chan et al.'s
  parallel algorithm, population std = sqrt(m2 / count)), ``out_of_range`` (values outside the baseline
  [min, max] = ``[edges[0], edges[-1]]``; everything when the baseline had no values) and, when
  ``sample_size`` > 0, a bounded uniform sample of the finite values (layouts without a grid: version-1
  baselines);
- categorical: counts per vocabulary value, ``other`` (values outside the vocabulary, i.e. unseen ones
  whenever the baseline had at most ``top_k`` categories), ``missing`` (nulls) and a Misra-Gries sketch
  of the out-of-vocabulary values (at most ``TAIL_SIZE`` = 64 entries): a new level with a 2 % share of
  the rows is always in it, its count under-estimated by at most ``other / 65``; exact while a window has
  at most 64 distinct unseen values.

**Accuracy.** Each value is known to within its cell, so the normalized Wasserstein distance of two grid
profiles is within ``cell width / baseline std`` (<= 0.0025 whenever the grid could be sized for it, see
:meth:`NumericStats.resolution`) of ``scipy.stats.wasserstein_distance`` on the full data divided by the
baseline's std (ddof=1), at any n; values beyond the grid count at their exact mean (the baseline has none
there, so that is exact); KS is within the largest cell share.

Predictions are features like any other (``probability`` numeric, a ``prediction`` label categorical or
numeric). A batch may carry any subset of the features: the others are left as they are.

**Sample ("bottom-k" reservoir).** Every row gets a 64-bit sampling key ``mix(identity ^ mix(seed))`` where
``identity`` is a stable hash of the row's id (the ``key`` column) or of its position, see :func:`row_keys`.
Each numeric feature keeps the ``sample_size`` (key, value) pairs that are smallest in (key, value) order.
With keys from a good hash of distinct ids this is a uniform sample without replacement, and merging two
samples (keep the smallest k of their union) gives exactly the sample of the union: a pair among the k
smallest of A u B is among the k smallest of its own part. Because a row's key depends on its identity
only, never on the batch, chunk, instance or merge order, **a profile merged from any chunking equals the
profile of the whole data exactly** for counts, missing, out-of-range, min/max, categorical counts and the
sample; ``mean``/``m2`` agree to floating-point rounding (far below 1e-9 relative), and a two-way merge
is exactly commutative. Needed for that: the same ``seed``, and row identities that do not depend on the
chunking (ids, or positions within one file plus a per-file ``salt``). Rows with the same id share a key
(so duplicates are kept or dropped together); rows with a null id get the largest key (sampled last).
Use different seeds for the baseline and the current profiles so their samples are independent.

**Versions.** ``to_json`` writes version 2; ``from_json`` reads versions 1 and 2. A version-1 profile has no
grid and no tail sketch: it loads as such, windows made from it (:meth:`Profile.blank`) keep its layout, and
``compare`` falls back to the coarse bins and the samples for it (and says so in the report).

Example:
    >>> import pyarrow as pa
    >>> t = pa.table({"id": ["a", "b", "c", "d"], "x": [1.0, 2.0, None, 9.0], "c": ["u", "v", "u", "w"]})
    >>> base = Profile.baseline(t, numeric=["x"], categorical=["c"], bins=2)
    >>> cur = base.blank(seed=7).update(t.slice(0, 2)).merge(base.blank(seed=7).update(t.slice(2)))
    >>> cur == base.blank(seed=7).update(t), cur.features["x"].missing, cur.features["c"].counts.tolist()
    (True, 1, [2, 1, 1])
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "BASELINE_SEED",
    "GRID_RESOLUTION",
    "PROFILE_FORMAT",
    "PROFILE_VERSION",
    "TAIL_SIZE",
    "CategoricalStats",
    "FeatureSpec",
    "NumericStats",
    "Profile",
    "grid_for",
    "row_keys",
    "specs_from_baseline",
]

PROFILE_FORMAT = "scorehook.profile"
PROFILE_VERSION = 2
READABLE_VERSIONS = (1, 2)
GRID_RESOLUTION = 0.0025
"""Largest grid cell width, in baseline standard deviations (when 65,536 cells are enough for it)."""
GRID_CELLS = (256, 65536)
TAIL_SIZE = 64
"""Entries of a categorical feature's sketch of out-of-vocabulary values (Misra-Gries)."""
BASELINE_SEED = 0x5EED_BA5E
"""Default sampling seed of baselines (current profiles default to 0), so the two samples are independent."""

_U64 = np.uint64
_MAX = np.iinfo(np.uint64).max
_M1, _M2, _GOLD = _U64(0xBF58476D1CE4E5B9), _U64(0x94D049BB133111EB), _U64(0x9E3779B97F4A7C15)
_S30, _S27, _S31, _S29 = _U64(30), _U64(27), _U64(31), _U64(29)
_INT_TAG, _STR_TAG = _U64(0x1D5), _U64(0x57B)
_LANES = np.arange(8)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer (a bijection with full avalanche), in place on a fresh uint64 array."""
    t = z >> _S30
    z ^= t
    z *= _M1
    np.right_shift(z, _S27, out=t)
    z ^= t
    z *= _M2
    np.right_shift(z, _S31, out=t)
    z ^= t
    return z


def _salt(salt: str | int) -> np.uint64:
    if isinstance(salt, str):
        return _U64(_hash_strings(pa.array([salt]), _U64(0))[0])
    return _U64(_mix(np.array([salt & 0xFFFFFFFFFFFFFFFF], np.uint64) ^ _INT_TAG)[0])


def _hash_strings(arr: pa.Array, h0: np.uint64) -> np.ndarray:
    """64-bit hash of each value's UTF-8 bytes: length first, then 8-byte little-endian words."""
    arr = arr.cast(pa.large_binary())
    n = len(arr)
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], np.int64)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    if n:  # only this slice's bytes, plus 8 zero bytes so reads past the last value stay in bounds
        data = np.concatenate([data[offsets[0] : offsets[-1]], np.zeros(8, np.uint8)])
        offsets = offsets - offsets[0]
    starts, lengths = offsets[:-1], np.diff(offsets)
    h = lengths.view(np.uint64) ^ (h0 ^ _STR_TAG)
    longest = int(lengths.max(initial=0))
    words = -(-longest // 8)
    if n and longest == lengths.min():  # fixed width (typical ids): strided 8-byte reads, no gathers
        columns = np.zeros((words, n), np.uint64)
        for w in range(words):
            columns[w] = np.ndarray((n,), "<u8", data, offset=8 * w, strides=(longest,))
            if longest - 8 * w < 8:  # keep this value's bytes only
                columns[w] &= _U64((1 << (8 * (longest - 8 * w))) - 1)
    else:
        columns = np.zeros((words, n), np.uint64)
        for w in range(words):
            lanes = 8 * w + _LANES
            raw = data[np.minimum(starts[:, None] + lanes, data.size - 1)]
            raw[lanes >= lengths[:, None]] = 0
            columns[w] = raw.view("<u8")[:, 0]
    t = np.empty_like(h)
    for word in columns:  # h = mulxorshift(h ^ word)
        h *= _M1
        h ^= word
        h *= _M2
        np.right_shift(h, _S29, out=t)
        h ^= t
    return _mix(h)


def row_keys(
    ids: pa.Array | pa.ChunkedArray | Sequence[Any] | None = None,
    *,
    offset: int = 0,
    rows: int | None = None,
    salt: str | int = 0,
) -> np.ndarray:
    """Stable 64-bit row identities (uint64): a hash of each id, or of positions ``offset .. offset+rows-1``.

    Strings hash their UTF-8 bytes, integers their value (a position hashes like the integer id), both
    mixed with ``salt`` (e.g. the file's URL when positions identify rows). Null ids map to the largest key.
    The values are part of the stored profile format: they never change within ``PROFILE_VERSION``.

    Example:
        >>> int(row_keys(["r00000001"])[0]) == int(row_keys(pa.array(["x", "r00000001"]).slice(1))[0])
        True
        >>> bool((row_keys(offset=5, rows=2) == row_keys([5, 6])).all()), row_keys(offset=0, rows=0).size
        (True, 0)
    """
    h0 = _salt(salt)
    if ids is None:
        if rows is None:
            raise ValueError("row_keys needs ids, or rows (with offset) for positions")
        values = np.arange(offset, offset + rows, dtype=np.int64).view(np.uint64)
        return _mix(_mix(values ^ h0 ^ _INT_TAG) + _GOLD)
    arr: pa.Array = (
        ids.combine_chunks()
        if isinstance(ids, pa.ChunkedArray)
        else ids
        if isinstance(ids, pa.Array)
        else pa.array(ids)
    )
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_integer(arr.type):
        values = pc.cast(arr, pa.int64()).fill_null(0).to_numpy().view(np.uint64)
        h = _mix(_mix(values ^ h0 ^ _INT_TAG) + _GOLD)
    elif pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) or pa.types.is_binary(arr.type):
        h = _hash_strings(arr, h0)
    else:
        raise TypeError(f"row ids must be strings or integers, got {arr.type}")
    if arr.null_count:
        h[arr.is_null().to_numpy(zero_copy_only=False)] = _MAX
    return h


@dataclass(frozen=True)
class FeatureSpec:
    """One feature's fixed layout: ``edges`` (numeric, bin i = [edges[i], edges[i+1]), outer bins open) or
    ``vocabulary`` (categorical, plus an implicit "other"); ``grid`` = (origin, step, cells) for a numeric
    feature's fine histogram (version 2): cell i = [origin + i step, origin + (i + 1) step), plus an
    underflow and an overflow cell (``()``: no grid, a version-1 layout).

    Example:
        >>> FeatureSpec("x", "numeric", edges=(0.0, 1.0, 2.0)).bins, FeatureSpec("c", "categorical", vocabulary=("a",)).bins
        (2, 1)
        >>> FeatureSpec("x", "numeric", (0.0, 2.0), grid=(-0.5, 0.25, 12)).cells
        12
    """

    name: str
    kind: str
    edges: tuple[float, ...] = ()
    vocabulary: tuple[str, ...] = ()
    grid: tuple[float, float, int] | tuple[()] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("numeric", "categorical"):
            raise ValueError(f"kind must be 'numeric' or 'categorical', got {self.kind!r}")
        if any(b < a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"{self.name}: edges must be non-decreasing")
        object.__setattr__(self, "edges", tuple(float(e) for e in self.edges))
        object.__setattr__(self, "vocabulary", tuple(str(v) for v in self.vocabulary))
        if self.grid:
            origin, step, cells = self.grid  # type: ignore[misc]
            if self.kind != "numeric" or not (step > 0 and int(cells) >= 1 and math.isfinite(origin)):
                raise ValueError(
                    f"{self.name}: grid must be (origin, step > 0, cells >= 1) of a numeric feature"
                )
            object.__setattr__(self, "grid", (float(origin), float(step), int(cells)))

    @property
    def bins(self) -> int:
        """Number of bins (numeric; 1 when the baseline had no values) or vocabulary values (categorical)."""
        return max(len(self.edges) - 1, 1) if self.kind == "numeric" else len(self.vocabulary)

    @property
    def cells(self) -> int:
        """Grid cells (0 without a grid), not counting the underflow and overflow cells."""
        return self.grid[2] if self.grid else 0  # type: ignore[misc]


def grid_for(
    lo: float, hi: float, std: float, resolution: float = GRID_RESOLUTION
) -> tuple[float, float, int]:
    """The grid of a baseline with values in [lo, hi] and standard deviation ``std``: [lo, hi] widened by 10 %
    each side, cells at most ``resolution`` std wide (a power of two of cells, 256 .. 65,536). A constant
    baseline gets one cell centred on its value.

    Example:
        >>> grid_for(-4.0, 4.0, 1.0)
        (-4.8, 0.00234375, 4096)
        >>> grid_for(3.0, 3.0, 0.0)[2]
        1
    """
    if not hi > lo:
        step = max(abs(lo), 1.0) * 1e-6
        return lo - step / 2, step, 1
    span = 1.2 * (hi - lo)
    wanted = span / (resolution * std) if std > 0 else GRID_CELLS[1]
    cells = int(min(max(2 ** math.ceil(math.log2(max(wanted, 1.0))), GRID_CELLS[0]), GRID_CELLS[1]))
    return lo - 0.1 * (hi - lo), span / cells, cells


_COARSE_MAPS: dict[FeatureSpec, np.ndarray] = {}


def _coarse_map(spec: FeatureSpec) -> np.ndarray:
    """Coarse bin of each grid cell (underflow first, overflow last): the bin of the cell's midpoint."""
    found = _COARSE_MAPS.get(spec)
    if found is None:
        origin, step, cells = spec.grid  # type: ignore[misc]
        mids = origin + step * (np.arange(cells + 2) - 0.5)
        inner = np.asarray(spec.edges[1:-1], np.float64)
        found = np.searchsorted(inner, mids, side="right")
        found[0], found[-1] = 0, spec.bins - 1
        if len(_COARSE_MAPS) > 4096:
            _COARSE_MAPS.clear()
        found = _COARSE_MAPS.setdefault(spec, found)
    return found


_SPECS: dict[tuple[Any, ...], FeatureSpec] = {}


def _spec(name: str, kind: str, edges: Any = (), vocabulary: Any = (), grid: Any = ()) -> FeatureSpec:
    """The :class:`FeatureSpec` of a parsed profile entry, one object per layout: the compactor parses every
    part of a window, each with the window's layout, and the validation cost ~0.3 ms a part."""
    key = (name, kind, tuple(edges), tuple(vocabulary), tuple(grid))
    found = _SPECS.get(key)
    if found is None:
        found = FeatureSpec(name, kind, key[2], vocabulary=key[3], grid=key[4])  # type: ignore[arg-type]
        if len(_SPECS) > 4096:
            _SPECS.clear()
        found = _SPECS.setdefault(key, found)
    return found


def specs_from_baseline(baseline: dict[str, Any], *, top_k: int = 20) -> tuple[FeatureSpec, ...]:
    """The layout of a ``training.train.baseline_profile`` dict: its edges, and its ``top_k`` categories.

    Example:
        >>> b = {"numeric": {"x": {"edges": [0, 1, 2]}}, "categorical": {"c": {"counts": {"a": 3, "b": 1}}}}
        >>> [(s.name, s.edges or s.vocabulary) for s in specs_from_baseline(b, top_k=1)]
        [('x', (0.0, 1.0, 2.0)), ('c', ('a',))]
    """
    numeric = [FeatureSpec(n, "numeric", tuple(e["edges"] or ())) for n, e in baseline["numeric"].items()]
    categorical = [
        FeatureSpec(n, "categorical", vocabulary=tuple(_top(e["counts"].items(), top_k)))
        for n, e in baseline["categorical"].items()
    ]
    return (*numeric, *categorical)


def _top(pairs: Iterable[tuple[str, int]], k: int) -> list[str]:
    return [v for v, _ in sorted(pairs, key=lambda vc: (-vc[1], vc[0]))[:k]]


def _other_excess(strings: pa.Array | pa.ChunkedArray, counts: dict[str, int], top_k: int) -> float:
    """How much a top-``top_k`` vocabulary's out-of-vocabulary share, measured on the rows it was chosen
    from, understates the share on fresh rows: chosen on the even rows, the share on the odd rows minus the
    share on the even rows (0 when not positive). Half the rows select worse than all of them, so this
    errs on the side of the larger excess (a fresh window is then less easily called "unseen").
    ``counts`` are the column's value counts (the odd rows' are those minus the even rows').

    Example:
        >>> levels = np.array([f"L{i}" for i in range(500)])
        >>> column = pa.array(levels[np.random.default_rng(0).integers(0, 500, 20_000)])
        >>> full = {v["values"]: v["counts"] for v in pc.value_counts(column).to_pylist()}
        >>> 0.03 < _other_excess(column, full, 256) < 0.15
        True
    """
    strings = pa.chunked_array([strings]) if isinstance(strings, pa.Array) else strings
    even = np.zeros(len(strings), bool)
    even[::2] = True
    vc = pc.value_counts(strings.filter(pa.array(even)).drop_null()).to_pylist()
    even_counts = {v["values"]: v["counts"] for v in vc}
    halves = [even_counts, {v: c - even_counts.get(v, 0) for v, c in counts.items()}]
    chosen = set(_top(even_counts.items(), top_k))
    shares = []
    for counts in halves:
        total = sum(counts.values())
        shares.append(sum(c for v, c in counts.items() if v not in chosen) / total if total else 0.0)
    return round(max(shares[1] - shares[0], 0.0), 6)


def _b64(a: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype).tobytes()).decode("ascii")


def _unb64(s: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype).astype(dtype[1:])


def _candidates(keys: np.ndarray, bound: np.uint64 | None, k: int) -> np.ndarray:
    """Rows that may enter a bottom-``k`` sample whose largest key is ``bound`` (None: not full yet)."""
    cand = np.flatnonzero(keys <= bound) if bound is not None else np.arange(keys.size)
    if cand.size > k:  # only the batch's own k smallest keys (and ties) can enter
        cand = cand[keys[cand] <= np.partition(keys[cand], k - 1)[k - 1]]
    return cand


def _bottom_k(
    keys: np.ndarray,
    values: np.ndarray,
    more_keys: np.ndarray,
    more_values: np.ndarray,
    k: int,
    plans: dict[Any, Any] | None = None,
    tag: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest (key, value) pairs of a sample sorted by (key, value) and more pairs, sorted.

    Without equal keys the selection depends on the keys only: ``plans[tag]`` caches it for features
    whose sample keys and candidate keys are the same (no missing values), so one sort serves them all.
    """
    plan = plans.get(tag) if plans is not None else None
    pooled = np.concatenate([values, more_values])
    if plan is None or not (plan[0] is keys or np.array_equal(plan[0], keys)):
        both = np.concatenate([keys, more_keys])
        order = np.argsort(both, kind="stable")  # a sorted run plus a few more: close to linear
        ranked = both[order]
        if np.any(ranked[1:] == ranked[:-1]):  # equal keys (duplicate ids): order those by value too
            order = np.lexsort((pooled, both))[:k]
            return both[order], pooled[order]
        plan = (keys, order[:k], ranked[:k])
        if plans is not None:
            plans[tag] = plan
    return plan[2], pooled[plan[1]]


def _pack(counts: np.ndarray) -> dict[str, str]:
    """Counts as zlib-compressed little-endian integers of the smallest width that holds them, base64.
    Level 1: every scored file packs its part's cells, and level 6 cost ~6x the CPU for ~25 % less."""
    dtype = _width(int(counts.max(initial=0)))
    return _packed(dtype, np.ascontiguousarray(counts, dtype).tobytes())


def _width(top: int) -> str:
    """The smallest little-endian unsigned type that holds ``top``."""
    return next(d for d, limit in (("<u1", 1 << 8), ("<u2", 1 << 16), ("<u4", 1 << 32), ("<u8", None))
                if limit is None or top < limit)  # fmt: skip


def _packed(dtype: str, raw: bytes) -> dict[str, str]:
    return {"dtype": dtype, "z": base64.b64encode(zlib.compress(raw, 1)).decode("ascii")}


def _unpack(d: dict[str, str], size: int) -> np.ndarray:
    """Inverse of :func:`_pack` for ``size`` counts; ``ValueError`` when the entry does not decode to that
    many unsigned integers (a damaged part is then set aside, never crashes its compactor)."""
    try:
        dtype = np.dtype(d["dtype"])
        raw = zlib.decompress(base64.b64decode(d["z"], validate=True))
        if dtype.kind != "u" or len(raw) != size * dtype.itemsize:
            raise ValueError(f"{len(raw)} bytes of {dtype} for {size} counts")
    except (zlib.error, binascii.Error, TypeError, KeyError) as exc:
        raise ValueError(f"undecodable counts: {type(exc).__name__}: {exc}") from exc
    return np.frombuffer(raw, dtype).astype(np.int64)


_NO_KEYS, _NO_VALUES = np.zeros(0, np.uint64), np.zeros(0, np.float64)


class NumericStats:
    """A numeric feature's mergeable state (see the module docstring); ``sample_keys`` sorted with values.

    ``cells`` (grid layouts): counts of the underflow cell, the ``spec.cells`` grid cells and the overflow
    cell; ``under_sum``/``over_sum`` the exact sums of the values in the outer two. ``counts`` are the coarse
    bins (derived from the cells in grid layouts).
    """

    def __init__(
        self,
        spec: FeatureSpec,
        counts: np.ndarray | None = None,
        count: int = 0,
        missing: int = 0,
        out_of_range: int = 0,
        min: float | None = None,
        max: float | None = None,
        mean: float = 0.0,
        m2: float = 0.0,
        sample_keys: np.ndarray | None = None,
        sample_values: np.ndarray | None = None,
        cells: np.ndarray | None = None,
        under_sum: float = 0.0,
        over_sum: float = 0.0,
    ) -> None:
        self.spec, self.count, self.missing, self.out_of_range = spec, count, missing, out_of_range
        self.min, self.max, self.mean, self.m2 = min, max, mean, m2
        self.sample_keys = _NO_KEYS if sample_keys is None else sample_keys  # replaced, never changed in place
        self.sample_values = _NO_VALUES if sample_values is None else sample_values
        self.cells = cells if cells is not None or not spec.grid else np.zeros(spec.cells + 2, np.int64)
        self.under_sum, self.over_sum = under_sum, over_sum
        self._counts = np.zeros(spec.bins, np.int64) if counts is None else counts

    @classmethod
    def empty(cls, spec: FeatureSpec) -> NumericStats:
        """A state with nothing counted yet.

        Example:
            >>> NumericStats.empty(FeatureSpec("x", "numeric", (0, 1, 2))).counts.tolist()
            [0, 0]
        """
        return cls(spec)

    @property
    def counts(self) -> np.ndarray:
        """Counts per coarse bin (in grid layouts, each cell counted in the bin of its midpoint)."""
        if self.cells is None:
            return self._counts
        return np.bincount(_coarse_map(self.spec), weights=self.cells, minlength=self.spec.bins).astype(
            np.int64
        )

    @counts.setter
    def counts(self, value: np.ndarray) -> None:
        if self.cells is not None:
            raise ValueError(f"{self.spec.name}: the coarse counts of a grid layout come from its cells")
        self._counts = value

    @property
    def rows(self) -> int:
        """Rows seen (values and missing ones)."""
        return self.count + self.missing

    def std(self, ddof: int = 0) -> float | None:
        """Standard deviation (population for ``ddof=0``); None when ``count <= ddof``.

        Example:
            >>> s = NumericStats.empty(FeatureSpec("x", "numeric")); s.add(np.array([1.0, 3.0]), np.zeros(2, np.uint64), 0)
            >>> s.std(), s.std(1), s.mean
            (1.0, 1.4142135623730951, 2.0)
        """
        return float(np.sqrt(self.m2 / (self.count - ddof))) if self.count > ddof else None

    def atoms(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions, counts) of the grid histogram: cell midpoints, the underflow and overflow cells at the
        mean of their values (their midpoint when empty). Grid layouts only.

        Example:
            >>> s = NumericStats.empty(FeatureSpec("x", "numeric", (0.0, 1.0), grid=(0.0, 0.5, 2)))
            >>> s.add(np.array([0.1, 0.2, 0.7, 5.0]), np.zeros(4, np.uint64), 0)
            >>> [p.tolist() for p in s.atoms()]
            [[-0.25, 0.25, 0.75, 5.0], [0, 2, 1, 1]]
        """
        origin, step, cells = self.spec.grid  # type: ignore[misc]
        pos = origin + step * (np.arange(cells + 2) - 0.5)
        assert self.cells is not None
        if self.cells[0]:
            pos[0] = self.under_sum / self.cells[0]
        if self.cells[-1]:
            pos[-1] = self.over_sum / self.cells[-1]
        return pos, self.cells

    def add(
        self, x: np.ndarray, keys: np.ndarray | None, k: int, shared: dict[Any, np.ndarray] | None = None
    ) -> None:
        """Add float64 or float32 values ``x`` (NaN = missing) with their sampling ``keys`` (needed when
        ``k`` > 0); keep at most ``k`` samples. float32 values (what ONNX models read) are binned in float32,
        without a copy; moments accumulate in float64.

        ``shared`` (one dict per batch) lets features without missing values share the sample candidates.
        """
        total, lo, hi = x.size, *((float(x.min()), float(x.max())) if x.size else (0.0, 0.0))
        complete = bool(np.isfinite(lo) and np.isfinite(hi))  # NaN and inf show in min/max: no extra pass
        if not complete:
            finite = np.isfinite(x)
            x = x[finite]
            keys = keys[finite] if keys is not None and k else keys
            lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        n = x.size
        self.missing += total - n
        if n == 0:
            return
        edges = self.spec.edges
        if self.cells is not None:
            mean, m2 = self._grid_add(x, lo, hi)
        else:
            if edges:
                e = np.asarray(edges, x.dtype)  # compare in the values' own precision
                below = [np.count_nonzero(x < v) for v in e[1:-1]]
                self._counts += np.diff(np.array([0, *below, n]))
            else:
                self._counts[0] += n
            mean, m2 = _moments(x, edges)
        if not edges:
            self.out_of_range += n
        else:
            e0, e1 = x.dtype.type(edges[0]), x.dtype.type(edges[-1])
            if lo < e0:
                self.out_of_range += int(np.count_nonzero(x < e0))
            if hi > e1:
                self.out_of_range += int(np.count_nonzero(x > e1))
        self._absorb(n, lo + 0.0, hi + 0.0, mean, m2)
        if k and keys is not None:
            bound = self.sample_keys[-1] if self.sample_keys.size >= k else None
            cand = shared.get(bound) if complete and shared is not None else None
            if cand is None:
                cand = _candidates(keys, bound, k)
                if complete and shared is not None:
                    shared[bound] = cand
            if cand.size:
                self.sample_keys, self.sample_values = _bottom_k(
                    self.sample_keys,
                    self.sample_values,
                    keys[cand],
                    x[cand].astype(np.float64) + 0.0,
                    k,
                    shared if complete else None,
                    ("plan", bound),
                )

    def _grid_add(self, x: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
        """Count finite ``x`` into the cells; (mean, m2) of ``x``. Cell of x: floor((x - origin) / step) + 1,
        computed in the values' precision (0: underflow, cells + 1: overflow)."""
        origin, step, cells = self.spec.grid  # type: ignore[misc]
        ftype = x.dtype.type
        t = np.subtract(x, ftype(origin - step))  # the one copy: t = (x - origin) / step + 1 below
        n = x.size
        if x.dtype != np.float32:  # float64 (baselines): the exact two-pass moments
            s1, s2 = 0.0, 0.0
            moments = _moments(x, ())
        else:  # scoring batches: float32 sums of t, the copy made anyway (reported, never decide)
            s1 = float(t.sum())
            s2 = float(np.einsum("i,i->", t, t))  # not t @ t: BLAS's spinning threads take the parser's core
            moments = None
        if lo < origin or hi >= origin + cells * step:  # values beyond the grid (3e38 * 1/step may overflow)
            with np.errstate(over="ignore"):
                np.multiply(t, ftype(1.0 / step), out=t)
            np.clip(t, 0, cells + 1, out=t)
        else:
            np.multiply(t, ftype(1.0 / step), out=t)
        c = t.astype(np.int32)
        got = np.zeros(cells + 2, np.int64)
        np.add.at(got, c, 1)  # numpy 2's fast path: ~20 % less than bincount, which copies to intp and scans
        assert self.cells is not None
        self.cells += got
        if got[0]:
            self.under_sum += float(x[c == 0].sum(dtype=np.float64))
        if got[-1]:
            self.over_sum += float(x[c == cells + 1].sum(dtype=np.float64))
        if moments is not None:
            return moments
        mean_t = s1 / n
        return float(ftype(origin - step)) + mean_t, max(s2 - s1 * mean_t, 0.0)

    def resolution(self) -> float | None:
        """The largest error of a normalized Wasserstein distance between two grid profiles of this layout,
        due to the grid alone: one cell width over this (baseline) profile's std (ddof=1); None without a
        grid or a std.

        Example:
            >>> s = NumericStats.empty(FeatureSpec("x", "numeric", (0.0, 1.0), grid=(0.0, 0.01, 100)))
            >>> s.add(np.array([0.0, 1.0]), None, 0); round(s.resolution(), 6)
            0.014142
        """
        std = self.std(1)
        if not self.spec.grid or not std:
            return None
        return self.spec.grid[1] / std  # type: ignore[misc]

    def _absorb(self, n: int, lo: float | None, hi: float | None, mean: float, m2: float) -> None:
        """Chan et al.: combine (count, mean, m2); the weighted mean keeps a two-way merge commutative."""
        if n == 0:
            return
        total, d = self.count + n, mean - self.mean
        self.m2 = self.m2 + m2 + d * d * (self.count * n / total) if self.count else m2
        self.mean = (self.count * self.mean + n * mean) / total if self.count else mean
        self.count = total
        self.min = lo if self.min is None or lo < self.min else self.min  # type: ignore[operator]
        self.max = hi if self.max is None or hi > self.max else self.max  # type: ignore[operator]

    def merged(self, other: NumericStats, k: int) -> NumericStats:
        """The state of both (``other`` must have the same spec): a copy of this one that absorbed ``other``."""
        out = NumericStats(
            self.spec, self._counts, self.count, self.missing, self.out_of_range, self.min, self.max, self.mean,
            self.m2, self.sample_keys, self.sample_values, None if self.cells is None else self.cells.copy(),
            self.under_sum, self.over_sum,
        )  # fmt: skip
        out.absorb(other, k)
        return out

    def absorb(self, other: NumericStats, k: int) -> None:
        """Add ``other`` (same spec) into this state in place (the cells in place; every other array anew)."""
        if self.cells is not None:
            assert other.cells is not None
            self.cells += other.cells
        else:
            self._counts = self._counts + other._counts
        self.missing += other.missing
        self.out_of_range += other.out_of_range
        self.under_sum += other.under_sum
        self.over_sum += other.over_sum
        self._absorb(other.count, other.min, other.max, other.mean, other.m2)
        if self.sample_keys.size or other.sample_keys.size:
            self.sample_keys, self.sample_values = _bottom_k(
                self.sample_keys, self.sample_values, other.sample_keys, other.sample_values, k
            )

    def to_json(self, cells: dict[str, str] | None = None) -> dict[str, Any]:
        """JSON-ready state; the sample as base64 little-endian uint64 keys and float64 values (exact), the
        cells as zlib-compressed integers (``_pack``, or ``cells`` when the profile packed them already); no
        sample entry when there is none in a grid layout.

        In :meth:`Profile.to_json` keys equal to an earlier feature's are written ``{"same_as": name}``.
        """
        d: dict[str, Any] = {"kind": "numeric", "edges": list(self.spec.edges)}
        if self.cells is not None:
            d |= {"grid": list(self.spec.grid), "cells": cells or _pack(self.cells),
                  "under_sum": self.under_sum, "over_sum": self.over_sum}  # fmt: skip
        else:
            d["counts"] = self._counts.tolist()
        d |= {
            "count": self.count,
            "missing": self.missing,
            "out_of_range": self.out_of_range,
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "m2": self.m2,
        }
        if self.cells is None or self.sample_values.size:
            d["sample"] = {"keys": _b64(self.sample_keys, "<u8"), "values": _b64(self.sample_values, "<f8")}
        return d

    @classmethod
    def from_json(cls, name: str, d: dict[str, Any]) -> NumericStats:
        """Inverse of :meth:`to_json` (version 1 entries too: no grid)."""
        spec = _spec(name, "numeric", d["edges"], grid=d.get("grid") or ())
        sample = d.get("sample") or {"keys": "", "values": ""}
        keys, values = _unb64(sample["keys"], "<u8"), _unb64(sample["values"], "<f8")
        scalars = {k: d[k] for k in ("count", "missing", "out_of_range", "min", "max", "mean", "m2")}
        if spec.grid:
            cells = _unpack(d["cells"], spec.cells + 2)
            if keys.size != values.size:
                raise ValueError(f"{name}: inconsistent profile entry")
            return cls(spec, None, **scalars, sample_keys=keys, sample_values=values, cells=cells,
                       under_sum=float(d["under_sum"]), over_sum=float(d["over_sum"]))  # fmt: skip
        if len(d["counts"]) != spec.bins or keys.size != values.size:
            raise ValueError(f"{name}: inconsistent profile entry")
        return cls(spec, np.asarray(d["counts"], np.int64), **scalars, sample_keys=keys, sample_values=values)


_FEW_VALUES = 4 * TAIL_SIZE
"""Distinct values of a batch up to which a categorical feature maps them with a dict (above: Arrow kernels)."""


@functools.lru_cache(maxsize=1024)
def _vocabulary_index(vocabulary: tuple[str, ...]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, value in enumerate(vocabulary):
        index.setdefault(value, i)  # the first position of a repeated value, as ``pc.index_in`` finds it
    return index


def _tail_merge(
    values: Sequence[str], counts: np.ndarray, more_values: Sequence[str], more_counts: np.ndarray
) -> tuple[list[str], np.ndarray]:
    """Misra-Gries merge of two sketches: counts add; beyond ``TAIL_SIZE`` entries every count drops by the
    (TAIL_SIZE + 1)-th largest and the non-positive ones go. Sorted by count (descending), then value."""
    pooled: dict[str, int] = dict(zip(values, counts.tolist(), strict=True))
    for v, c in zip(more_values, more_counts.tolist(), strict=True):
        pooled[v] = pooled.get(v, 0) + int(c)
    items = sorted(pooled.items(), key=lambda vc: (-vc[1], vc[0]))
    if len(items) > TAIL_SIZE:
        cut = items[TAIL_SIZE][1]
        items = [(v, c - cut) for v, c in items[:TAIL_SIZE] if c > cut]
    return [v for v, _ in items], np.asarray([c for _, c in items], np.int64)


@dataclass(eq=False)
class CategoricalStats:
    """A categorical feature's mergeable state: ``counts`` per vocabulary value, ``other``, ``missing``, and
    the sketch of out-of-vocabulary values (``tail_values`` with their estimated ``tail_counts``).

    A baseline whose vocabulary could not hold every level also has ``other_excess``: how much its own
    out-of-vocabulary share understates what fresh data of the same distribution shows (the top levels are
    chosen by these very counts, so the ones left out came out low), estimated by choosing the vocabulary
    on half the rows and counting on the other half (see :meth:`Profile.baseline`)."""

    spec: FeatureSpec
    counts: np.ndarray
    other: int = 0
    missing: int = 0
    tail_values: list[str] = field(default_factory=list)
    tail_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    other_excess: float = 0.0

    @classmethod
    def empty(cls, spec: FeatureSpec) -> CategoricalStats:
        """A state with nothing counted yet.

        Example:
            >>> s = CategoricalStats.empty(FeatureSpec("c", "categorical", vocabulary=("a", "b")))
            >>> s.add(pa.array(["b", "z", None, "b"])); s.counts.tolist(), s.other, s.missing, s.tail_values
            ([0, 2], 1, 1, ['z'])
        """
        return cls(spec, np.zeros(spec.bins, np.int64))

    @property
    def rows(self) -> int:
        """Rows seen (values and missing ones)."""
        return int(self.counts.sum()) + self.other + self.missing

    def tail(self) -> dict[str, int]:
        """The sketch as {value: estimated count} (each at most ``other / (TAIL_SIZE + 1)`` below the truth)."""
        return dict(zip(self.tail_values, self.tail_counts.tolist(), strict=True))

    def add(self, column: pa.Array) -> None:
        """Count one Arrow column (strings, dictionary-encoded strings, or anything castable to string)."""
        if pa.types.is_dictionary(column.type):  # count the indices, then map the (small) dictionary
            values = pa.concat_arrays([_strings(column.dictionary), pa.nulls(1, pa.string())])
            indices = column.indices.fill_null(len(column.dictionary)).to_numpy()
            counts = np.bincount(indices, minlength=len(values))
        elif (
            pa.types.is_integer(column.type)
            and column.null_count == 0
            and _small_labels(ints := column.to_numpy())
        ):
            counts = np.bincount(ints)  # class labels 0..k: no hashing
            present = np.flatnonzero(counts)
            values, counts = pc.cast(pa.array(present), pa.string()), counts[present]
        else:  # count first, then name the (few) distinct values as strings
            vc = pc.value_counts(column)
            values, counts = _strings(vc.field("values")), vc.field("counts").to_numpy()
        if len(values) <= _FEW_VALUES:  # the usual case: a dict lookup per distinct value, no kernels
            self._add_few(values.to_pylist(), counts.tolist())
            return
        vocab = pa.array(self.spec.vocabulary, pa.string())
        index = pc.index_in(values, value_set=vocab).fill_null(-1).to_numpy()
        null = values.is_null().to_numpy(zero_copy_only=False)
        found = index >= 0
        np.add.at(self.counts, index[found], counts[found])
        self.missing += int(counts[null].sum())
        unseen = ~found & ~null & (counts > 0)  # not a dictionary's unused entries
        if unseen.any():
            self.other += int(counts[unseen].sum())
            if unseen.sum() > 4 * TAIL_SIZE:  # many distinct values: only the batch's heaviest can matter
                keep = np.flatnonzero(unseen)
                keep = keep[np.argsort(-counts[keep], kind="stable")[: 4 * TAIL_SIZE]]
                unseen = np.zeros_like(unseen)
                unseen[keep] = True
            names = values.filter(pa.array(unseen)).to_pylist()
            self.tail_values, self.tail_counts = _tail_merge(
                self.tail_values, self.tail_counts, names, counts[unseen].astype(np.int64)
            )

    def _add_few(self, values: list[str | None], counts: list[int]) -> None:
        """Count a batch's few distinct values (``values[i]`` seen ``counts[i]`` times; None: missing)."""
        index = _vocabulary_index(self.spec.vocabulary)
        names, unseen = [], []
        for value, count in zip(values, counts, strict=True):
            if not count:  # a dictionary's unused entry
                continue
            if value is None:
                self.missing += count
            elif (i := index.get(value)) is not None:
                self.counts[i] += count
            else:
                names.append(value)
                unseen.append(count)
        if names:
            self.other += sum(unseen)
            self.tail_values, self.tail_counts = _tail_merge(
                self.tail_values, self.tail_counts, names, np.asarray(unseen, np.int64)
            )

    def merged(self, other: CategoricalStats, k: int = 0) -> CategoricalStats:
        """The state of both (``other`` must have the same spec): a copy of this one that absorbed ``other``."""
        out = CategoricalStats(
            self.spec,
            self.counts,
            self.other,
            self.missing,
            self.tail_values,
            self.tail_counts,
            self.other_excess,
        )
        out.absorb(other, k)
        return out

    def absorb(self, other: CategoricalStats, k: int = 0) -> None:
        """Add ``other`` (same spec) into this state in place (its arrays and lists replaced, never changed)."""
        self.tail_values, self.tail_counts = _tail_merge(
            self.tail_values, self.tail_counts, other.tail_values, other.tail_counts
        )
        self.counts = self.counts + other.counts
        self.other += other.other
        self.missing += other.missing

    def to_json(self) -> dict[str, Any]:
        """JSON-ready state (``other_excess`` only when there is one: a truncated baseline vocabulary)."""
        d: dict[str, Any] = {
            "kind": "categorical",
            "vocabulary": list(self.spec.vocabulary),
            "counts": self.counts.tolist(),
            "other": self.other,
            "missing": self.missing,
            "tail": {"values": list(self.tail_values), "counts": self.tail_counts.tolist()},
        }
        if self.other_excess:
            d["other_excess"] = self.other_excess
        return d

    @classmethod
    def from_json(cls, name: str, d: dict[str, Any]) -> CategoricalStats:
        """Inverse of :meth:`to_json` (version 1 entries too: no sketch)."""
        spec = _spec(name, "categorical", vocabulary=d["vocabulary"])
        tail = d.get("tail") or {"values": [], "counts": []}
        if len(d["counts"]) != spec.bins or len(tail["values"]) != len(tail["counts"]):
            raise ValueError(f"{name}: inconsistent profile entry")
        excess = float(d.get("other_excess") or 0.0)
        if not 0.0 <= excess <= 1.0:
            raise ValueError(f"{name}: inconsistent profile entry")
        return cls(
            spec, np.asarray(d["counts"], np.int64), d["other"], d["missing"],
            [str(v) for v in tail["values"]], np.asarray(tail["counts"], np.int64), excess,
        )  # fmt: skip


def _small_labels(ints: np.ndarray) -> bool:
    """Whether integers are all small and non-negative (class labels), so a bincount counts them."""
    return bool(ints.size) and int(ints.min()) >= 0 and int(ints.max()) < 4096


def _moments(x: np.ndarray, edges: tuple[float, ...]) -> tuple[float, float]:
    """(mean, sum of squared deviations) of finite values.

    float64: exact two-pass. float32 (scoring inputs): pairwise float32 sums of the deviations from a pivot
    (the baseline's median edge), relative error about 1e-6: these moments are reported, never decide, and
    a float64 copy of every column would double the profile's cost.
    """
    if x.dtype != np.float32:
        mean = float(x.mean())
        d = x - mean
        with np.errstate(over="ignore"):  # |x| > 1e154: an infinite m2, as it is
            return mean, float(np.square(d, out=d).sum())  # pairwise, as each row of ``_add_grids``; no BLAS
    pivot = np.float32(edges[len(edges) // 2] if edges else x[0])
    d = x - pivot
    s1, s2 = float(d.sum()), float(np.square(d, out=d).sum())
    return float(pivot) + s1 / x.size, max(s2 - s1 * s1 / x.size, 0.0)


_GRID_GROUP = 2
"""Unsampled grid features of one float type in a batch counted together (at least this many): one array
operation over all of them instead of one per feature (a 1k-row batch of 21 features: ~0.9 -> ~0.3 ms)."""
_GRID_GROUP_ROWS = 2048
"""Batches of more rows count each feature on its own: there the grouped arrays (a stacked copy, int64 cells,
several MB each) cost more in memory traffic than the per-call overhead they save (21 features, batches of
4k rows: 0.14 vs 0.13 ms per 1k rows; the 75k-row batches of a 1M-row CSV: 0.098 vs 0.053 s per 1M rows)."""


def _add_grids(group: list[tuple[NumericStats, np.ndarray]], joint: _JointCells | None = None) -> None:
    """Add one batch's values (all float64 or all float32) to unsampled grid features, all features at
    once, exactly as :meth:`NumericStats.add` adds each (the same cells, sums and moments, bit for bit: the
    same operations in the same precision, row by row); a column with a missing or non-finite value is
    added on its own. When each feature of the group counts into ``joint``'s array, the cells of all are
    added there in one operation."""
    if len({x.size for _, x in group}) != 1 or len({x.dtype for _, x in group}) != 1:
        raise ValueError("the columns of one group must have one length and one float type")
    # a row per feature, contiguous (row reductions stay pairwise); joined as bytes: np.vstack releases the
    # GIL once per row
    values = np.frombuffer(
        bytearray().join([np.ascontiguousarray(x) for _, x in group]), group[0][1].dtype
    ).reshape(len(group), -1)
    lo, hi = values.min(axis=1), values.max(axis=1)
    complete = np.isfinite(lo) & np.isfinite(hi)  # NaN and inf show in min/max
    if not complete.all():
        for (stats, x), ok in zip(group, complete.tolist(), strict=True):
            if not ok:
                stats.add(x, None, 0)
        keep = np.flatnonzero(complete)
        group, values, lo, hi = [group[i] for i in keep], values[keep], lo[keep], hi[keep]
        if not group:
            return
    n, ftype = values.shape[1], values.dtype.type
    grid = np.array([stats.spec.grid for stats, _ in group], np.float64)  # origin, step, cells per row
    origin, step, cells = grid[:, 0], grid[:, 1], grid[:, 2].astype(np.int64)
    base = (origin - step).astype(values.dtype)
    t = np.subtract(values, base[:, None])
    if ftype is np.float64:  # the exact two-pass moments of each row (``_moments``)
        mean = values.mean(axis=1)
        deviations = np.subtract(values, mean[:, None], out=values)
        with np.errstate(over="ignore"):
            m2 = np.square(deviations, out=deviations).sum(axis=1)
        moments = [(float(mean[i]), float(m2[i])) for i in range(len(group))]
    else:  # float32 sums of t, as ``NumericStats._grid_add`` takes them
        s1 = t.sum(axis=1)
        moments = []
        for i in range(len(group)):
            row_s1 = float(s1[i])
            row_s2 = float(np.einsum("i,i->", t[i], t[i]))
            mean_t = row_s1 / n
            moments.append((float(base[i]) + mean_t, max(row_s2 - row_s1 * mean_t, 0.0)))
    inverse, top = (1.0 / step).astype(values.dtype), (cells + 1).astype(values.dtype)
    with np.errstate(over="ignore"):  # values beyond the grid (3e38 * 1/step may overflow): clipped
        np.multiply(t, inverse[:, None], out=t)
        # a row's lowest and highest cells are its min's and max's (the same steps, each monotonic)
        ends = np.multiply(np.subtract(np.stack([lo, hi], axis=1), base[:, None]), inverse[:, None])
    np.clip(t, 0, top[:, None], out=t)  # a no-op inside the grid
    ends = np.clip(ends, 0, top[:, None]).astype(np.int64)
    starts = None if joint is None else joint.starts_of([stats for stats, _ in group])
    index = t.astype(np.int64)
    if starts is not None:  # counted straight into the profile's one array of cells
        index += starts[:, None]
        np.add.at(joint.buffer, index.ravel(), 1)  # type: ignore[union-attr]
    else:
        offsets = np.concatenate([[0], np.cumsum(cells + 2)])
        starts = offsets[:-1]
        index += starts[:, None]
        got = np.bincount(index.ravel(), minlength=int(offsets[-1]))
        for i, (stats, _) in enumerate(group):
            assert stats.cells is not None
            stats.cells += got[offsets[i] : offsets[i + 1]]
    first, last = (ends[:, 0] == 0).tolist(), (ends[:, 1] == cells + 1).tolist()
    under, over = starts.tolist(), (starts + cells + 1).tolist()
    for i, (stats, x) in enumerate(group):
        if first[i]:
            stats.under_sum += float(x[index[i] == under[i]].sum(dtype=np.float64))
        if last[i]:
            stats.over_sum += float(x[index[i] == over[i]].sum(dtype=np.float64))
        low, high, edges = float(lo[i]), float(hi[i]), stats.spec.edges
        if not edges:
            stats.out_of_range += n
        else:
            e0, e1 = ftype(edges[0]), ftype(edges[-1])
            if low < e0:
                stats.out_of_range += int(np.count_nonzero(x < e0))
            if high > e1:
                stats.out_of_range += int(np.count_nonzero(x > e1))
        stats._absorb(n, low + 0.0, high + 0.0, *moments[i])


def _strings(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


def _floats(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """float64 values (float32 ones kept as they are), NaN for nulls (zero-copy without nulls: a float
    array's values buffer read as it is, without Arrow's conversion, which releases the GIL several times)."""
    kind = column.type
    if (kind == pa.float64() or kind == pa.float32()) and isinstance(column, pa.Array) and not column.null_count:
        dtype = np.float64 if kind == pa.float64() else np.float32
        return np.frombuffer(column.buffers()[1], dtype, len(column), column.offset * np.dtype(dtype).itemsize)
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    if pa.types.is_float32(column.type):
        return np.asarray(column.to_numpy(zero_copy_only=False), np.float32)
    if not pa.types.is_float64(column.type):
        column = pc.cast(column, pa.float64())
    return np.asarray(column.to_numpy(zero_copy_only=False), np.float64)


Stats = NumericStats | CategoricalStats


@dataclass(frozen=True)
class _JointCells:
    """The cells of a profile's grid features, one feature after another in one array (feature order), each
    feature's ``cells`` a view of it: a batch's cells of every feature are added with one operation and
    packed with one cast (each numpy call over more than a few hundred values releases the GIL, and a file
    scored beside others pays for every hand-off). Holds while those features still count into their
    views (a merge or a parse gives features arrays of their own)."""

    buffer: np.ndarray
    offsets: np.ndarray  # a start per feature, and the end
    stats: tuple[NumericStats, ...]
    starts: dict[int, int] = field(init=False, default_factory=dict)  # id(stats) -> where its cells start

    def __post_init__(self) -> None:
        self.starts.update((id(s), start) for s, start in zip(self.stats, self.offsets.tolist(), strict=False))

    def starts_of(self, group: Sequence[NumericStats]) -> np.ndarray | None:
        """Where the cells of each of ``group`` start in the array, or None unless every one of them is one of
        these features still counting into its view."""
        starts = [self.starts.get(id(s)) for s in group]
        if any(start is None for start in starts) or not all(
            s.cells is not None and s.cells.base is self.buffer for s in group
        ):
            return None
        return np.array(starts, np.int64)

    def pack(self, features: dict[str, Stats]) -> dict[str, dict[str, str]]:
        """Each feature's ``_pack`` of its cells (the same entries), with one reduction and one cast for all;
        empty when the features are no longer these."""
        if not self.stats or not all(
            features.get(s.spec.name) is s and s.cells is not None and s.cells.base is self.buffer
            for s in self.stats
        ):
            return {}
        sizes = np.diff(self.offsets)
        if (sizes == sizes[0]).all():  # the usual layout: as many cells each (reduceat is ~10x slower)
            tops = self.buffer.reshape(len(self.stats), -1).max(axis=1)
        else:
            tops = np.maximum.reduceat(self.buffer, self.offsets[:-1])
        widths = [_width(int(top)) for top in tops.tolist()]
        raw = {dtype: self.buffer.astype(dtype) for dtype in set(widths)}
        starts, ends = self.offsets[:-1].tolist(), self.offsets[1:].tolist()
        return {
            s.spec.name: _packed(dtype, raw[dtype][start:end].tobytes())
            for s, dtype, start, end in zip(self.stats, widths, starts, ends, strict=True)
        }


class Profile:
    """A mergeable profile of one model version over one time window (or of a baseline).

    ``sample_size`` bounds each numeric feature's sample; ``seed`` salts the sampling keys; ``key`` names
    the id column that identifies rows (see :func:`row_keys`). Profiles merge only with the same layout,
    ``sample_size``, ``seed``, ``key`` and ``model_version``; ``window`` is a pair of ISO-8601 strings
    (merging spans both windows).

    Example:
        >>> p = Profile([FeatureSpec("x", "numeric", (0.0, 10.0))], sample_size=2)
        >>> p.update(pa.table({"id": ["a", "b", "c"], "x": [1.0, 20.0, None]})).rows, p.features["x"].out_of_range
        (3, 1)
        >>> p.features["x"].sample_values.size, Profile.from_json(p.to_json()) == p
        (2, True)
    """

    def __init__(
        self,
        specs: Iterable[FeatureSpec],
        *,
        sample_size: int = 2048,
        seed: int = 0,
        key: str = "id",
        model_version: str | None = None,
        window: tuple[str, str] | None = None,
    ) -> None:
        if sample_size < 0:
            raise ValueError("sample_size must be >= 0")
        self.sample_size, self.seed, self.key = sample_size, seed, key
        self.model_version, self.window = model_version, tuple(window) if window else None
        self.features: dict[str, Stats] = {}
        specs = tuple(specs)
        sizes = [s.cells + 2 if s.kind == "numeric" and s.grid else 0 for s in specs]
        offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        cells = np.zeros(int(offsets[-1]), np.int64)  # one allocation: each grid feature's cells are a view
        gridded: list[NumericStats] = []
        starts: list[int] = []
        for spec, start, size in zip(specs, offsets.tolist(), sizes, strict=False):
            if spec.name in self.features:
                raise ValueError(f"duplicate feature {spec.name!r}")
            if size:
                stats: Stats = NumericStats(spec, cells=cells[start : start + size])
                gridded.append(stats)
                starts.append(start)
            else:
                stats = NumericStats.empty(spec) if spec.kind == "numeric" else CategoricalStats.empty(spec)
            self.features[spec.name] = stats
        self._cells = _JointCells(cells, np.array([*starts, cells.size], np.int64), tuple(gridded))
        self._seed_mix = _mix(np.array([seed & 0xFFFFFFFFFFFFFFFF], np.uint64) ^ _GOLD)[0]

    @property
    def specs(self) -> tuple[FeatureSpec, ...]:
        """The layout, in feature order."""
        return tuple(s.spec for s in self.features.values())

    @property
    def rows(self) -> int:
        """The most rows any feature has seen (features may come from different batches)."""
        return max((s.rows for s in self.features.values()), default=0)

    def blank(
        self, *, seed: int = 0, model_version: str | None = None, window: tuple[str, str] | None = None
    ) -> Profile:
        """An empty profile with this layout and sample size (e.g. a current profile from the baseline).

        Example:
            >>> Profile([FeatureSpec("x", "numeric")], sample_size=5).blank(model_version="3").sample_size
            5
        """
        return Profile(
            self.specs,
            sample_size=self.sample_size,
            seed=seed,
            key=self.key,
            model_version=model_version,
            window=window,
        )

    @classmethod
    def baseline(
        cls,
        table: pa.Table,
        *,
        numeric: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        bins: int = 10,
        top_k: int = 256,
        sample_size: int = 0,
        seed: int = BASELINE_SEED,
        key: str = "id",
        model_version: str | None = None,
        grid: bool = True,
        resolution: float = GRID_RESOLUTION,
    ) -> Profile:
        """Baseline layout and profile of ``table``: ``bins`` quantile bins per numeric column (the same edges
        as ``training.train.baseline_profile``) and a fine grid (:func:`grid_for`; ``grid=False``: none, the
        version-1 layout), the ``top_k`` most frequent values per categorical column.

        Without ``numeric``/``categorical``, number/bool columns are numeric and the others categorical
        (``key`` excluded). With ``sample_size`` > 0 rows are identified by ``key`` when present, else by
        position; the grid makes the sample unnecessary, so baselines have none by default.

        Example:
            >>> t = pa.table({"x": [float(i) for i in range(100)], "c": ["a"] * 60 + ["b"] * 40})
            >>> b = Profile.baseline(t, bins=4, top_k=1)
            >>> b.specs[0].edges, b.specs[0].grid, b.features["c"].counts.tolist(), b.features["c"].other
            ((0.0, 24.75, 49.5, 74.25, 99.0), (-9.9, 0.0580078125, 2048), [60], 40)
        """
        if numeric is None or categorical is None:
            names = [f for f in table.schema if f.name != key]
            is_num = [
                pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_boolean(f.type)
                for f in names
            ]
            numeric = (
                [f.name for f, n in zip(names, is_num, strict=True) if n] if numeric is None else numeric
            )
            categorical = (
                [f.name for f, n in zip(names, is_num, strict=True) if not n]
                if categorical is None
                else categorical
            )
        specs = []
        for name in numeric:
            x = _floats(table.column(name))
            present = x[np.isfinite(x)]
            edges = np.quantile(present, np.linspace(0, 1, bins + 1)) if present.size else np.zeros(0)
            fine: tuple[float, float, int] | tuple[()] = ()
            if grid and present.size:
                std = float(present.std(ddof=1)) if present.size > 1 else 0.0
                fine = grid_for(float(edges[0]), float(edges[-1]), std, resolution)
            specs.append(FeatureSpec(name, "numeric", tuple(edges), grid=fine))
        excess: dict[str, float] = {}
        for name in categorical:
            strings = _strings(table.column(name))
            pairs = [(v["values"], v["counts"]) for v in pc.value_counts(strings).to_pylist()]
            pairs = [p for p in pairs if p[0] is not None]
            specs.append(FeatureSpec(name, "categorical", vocabulary=tuple(_top(pairs, top_k))))
            if len(pairs) > top_k:
                excess[name] = _other_excess(strings, dict(pairs), top_k)
        profile = cls(specs, sample_size=sample_size, seed=seed, key=key, model_version=model_version)
        keys = (
            None if key in table.column_names or not sample_size else row_keys(offset=0, rows=table.num_rows)
        )
        profile.update(table, keys=keys)
        for name, value in excess.items():
            profile.features[name].other_excess = value  # type: ignore[union-attr]
        return profile

    @classmethod
    def from_baseline(
        cls,
        baseline: dict[str, Any],
        *,
        top_k: int = 20,
        sample_size: int = 2048,
        seed: int = BASELINE_SEED,
        key: str = "id",
        model_version: str | None = None,
    ) -> Profile:
        """A profile from a ``training.train.baseline_profile`` dict (a legacy baseline): counts, min/max,
        mean/std and missing counts as recorded, no out-of-range counts and an empty sample.

        Example:
            >>> from training.data import generate
            >>> from training.train import baseline_profile
            >>> p = Profile.from_baseline(baseline_profile(generate(500)))
            >>> p.rows, round(p.features["x01"].std(), 6) == round(baseline_profile(generate(500))["numeric"]["x01"]["std"], 6)
            (500, True)
        """
        profile = cls(
            specs_from_baseline(baseline, top_k=top_k),
            sample_size=sample_size,
            seed=seed,
            key=key,
            model_version=model_version,
        )
        rows = int(baseline["rows"])
        for name, stats in profile.features.items():
            if isinstance(stats, NumericStats):
                e = baseline["numeric"][name]
                stats.counts = np.asarray(e["counts"] if e["edges"] else [sum(e["counts"])], np.int64)
                stats.count, stats.missing = int(stats.counts.sum()), round(e["missing_rate"] * rows)
                if stats.count:
                    stats.min, stats.max, stats.mean = float(e["min"]), float(e["max"]), float(e["mean"])
                    stats.m2 = float(e["std"]) ** 2 * stats.count
            else:
                e = baseline["categorical"][name]
                stats.counts = np.asarray([e["counts"][v] for v in stats.spec.vocabulary], np.int64)
                stats.other = sum(e["counts"].values()) - int(stats.counts.sum())
                stats.missing = round(e["missing_rate"] * rows)
        return profile

    def update(self, batch: pa.RecordBatch | pa.Table, *, keys: np.ndarray | None = None) -> Profile:
        """Add a record batch (or table) in place and return ``self``; vectorised, no per-row Python.

        When the profile samples (``sample_size`` > 0), rows are identified by the ``key`` column unless
        ``keys`` (uint64 from :func:`row_keys`, one per row) are given; otherwise ``keys`` are ignored. Columns that are not features are ignored; features absent from the batch are
        left unchanged.

        Example:
            >>> p = Profile([FeatureSpec("x", "numeric", (0.0, 1.0))])
            >>> p.update(pa.record_batch({"x": [0.5, 2.0]}), keys=row_keys(offset=0, rows=2)).features["x"].counts.tolist()
            [2]
        """
        if isinstance(batch, pa.Table):
            start = 0
            for part in batch.to_batches():
                self.update(part, keys=None if keys is None else keys[start : start + part.num_rows])
                start += part.num_rows
            return self
        if batch.num_rows == 0:
            return self
        sampling = None
        if self.sample_size:  # rows need identities only to be sampled
            if keys is None:
                if self.key not in batch.schema.names:
                    raise ValueError(f"no {self.key!r} column to identify rows: pass keys=row_keys(...)")
                keys = row_keys(batch.column(self.key))
            keys = np.asarray(keys)
            if keys.dtype != np.uint64 or keys.shape != (batch.num_rows,):
                raise ValueError("keys must be a uint64 array with one key per row (see row_keys)")
            sampling = _mix(keys ^ self._seed_mix)
            sampling[keys == _MAX] = _MAX
        names, shared = set(batch.schema.names), dict[Any, np.ndarray]()
        grids: dict[Any, list[tuple[NumericStats, np.ndarray]]] = {}  # by float type
        for name, stats in self.features.items():
            if name not in names:
                continue
            if isinstance(stats, NumericStats):
                x = _floats(batch.column(name))
                if sampling is None and stats.cells is not None:
                    grids.setdefault(x.dtype, []).append((stats, x))
                else:
                    stats.add(x, sampling, self.sample_size, shared)
            else:
                stats.add(batch.column(name))
        for group in grids.values():
            if len(group) >= _GRID_GROUP and batch.num_rows <= _GRID_GROUP_ROWS:
                _add_grids(group, self._cells)
            else:
                for stats, x in group:
                    stats.add(x, None, 0)
        return self

    def _check(self, other: Profile) -> None:
        mine = (self.specs, self.sample_size, self.seed, self.key, self.model_version)
        theirs = (other.specs, other.sample_size, other.seed, other.key, other.model_version)
        for label, a, b in zip(
            ("layout", "sample_size", "seed", "key", "model_version"), mine, theirs, strict=True
        ):
            if a != b:
                raise ValueError(f"profiles differ in {label}: cannot merge")

    def merge(self, other: Profile) -> Profile:
        """A new profile of both: counts add, min/max combine, moments combine (Chan), samples merge exactly.

        Example:
            >>> a = Profile([FeatureSpec("x", "numeric")]).update(pa.table({"id": ["a"], "x": [1.0]}))
            >>> b = Profile([FeatureSpec("x", "numeric")]).update(pa.table({"id": ["b"], "x": [3.0]}))
            >>> m = a.merge(b); m.features["x"].mean, m.features["x"].std(), m == b.merge(a)
            (2.0, 1.0, True)
        """
        self._check(other)
        out = self.blank(
            seed=self.seed, model_version=self.model_version, window=_span(self.window, other.window)
        )
        for name, stats in self.features.items():
            out.features[name] = stats.merged(other.features[name], self.sample_size)  # type: ignore[arg-type]
        return out

    def absorb(self, other: Profile) -> Profile:
        """Add ``other`` into this profile in place and return ``self``: equal to ``self.merge(other)``, without
        a new profile per call (the compactor folds hundreds of parts into one). ``other`` is left as it was.

        Example:
            >>> a = Profile([FeatureSpec("x", "numeric")]).update(pa.table({"id": ["a"], "x": [1.0]}))
            >>> b = Profile([FeatureSpec("x", "numeric")]).update(pa.table({"id": ["b"], "x": [3.0]}))
            >>> merged = a.merge(b); a.absorb(b) == merged, b.rows
            (True, 1)
        """
        self._check(other)
        self.window = _span(self.window, other.window)
        for name, stats in self.features.items():
            stats.absorb(other.features[name], self.sample_size)  # type: ignore[arg-type]
        return self

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``format``, ``version``, settings, one entry per feature in order)."""
        packed = self._cells.pack(self.features)
        return {
            "format": PROFILE_FORMAT,
            "version": PROFILE_VERSION,
            "sample_size": self.sample_size,
            "seed": self.seed,
            "key": self.key,
            "model_version": self.model_version,
            "window": list(self.window) if self.window else None,
            "rows": self.rows,
            "features": _shared_keys({
                name: stats.to_json(packed[name]) if name in packed else stats.to_json()
                for name, stats in self.features.items()
            }),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Profile:
        """Inverse of :meth:`to_json` (reads versions 1 and 2); raises ``ValueError`` for another format or
        version."""
        if d.get("format") != PROFILE_FORMAT or d.get("version") not in READABLE_VERSIONS:
            raise ValueError(
                f"not a {PROFILE_FORMAT} v1 or v{PROFILE_VERSION} profile: {d.get('format')!r} v{d.get('version')!r}"
            )
        profile = cls(
            (),
            sample_size=d["sample_size"],
            seed=d["seed"],
            key=d["key"],
            model_version=d["model_version"],
            window=tuple(d["window"]) if d["window"] else None,  # type: ignore[arg-type]
        )
        for name, e in d["features"].items():
            if isinstance((e.get("sample") or {}).get("keys"), dict):  # {"same_as": an earlier feature}
                e = {
                    **e,
                    "sample": {
                        **e["sample"],
                        "keys": d["features"][e["sample"]["keys"]["same_as"]]["sample"]["keys"],
                    },
                }
            parse = NumericStats.from_json if e["kind"] == "numeric" else CategoricalStats.from_json
            profile.features[name] = parse(name, e)
        return profile

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Profile) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Profile({len(self.features)} features, rows={self.rows}, model_version={self.model_version!r}, window={self.window})"


def _shared_keys(features: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Write a sample's keys once: features with the same rows sampled (no missing values) refer back."""
    first: dict[str, str] = {}
    for name, e in features.items():
        keys = (e.get("sample") or {}).get("keys")
        if keys:
            if keys in first:
                e["sample"]["keys"] = {"same_as": first[keys]}
            else:
                first[keys] = name
    return features


def _span(a: tuple[str, ...] | None, b: tuple[str, ...] | None) -> tuple[str, str] | None:
    if a is None or b is None:
        return a or b  # type: ignore[return-value]
    return min(a[0], b[0]), max(a[1], b[1])
