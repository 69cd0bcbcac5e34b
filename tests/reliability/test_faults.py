"""Faults injected while files are being scored, on a stack of its own: a persistent Azurite that can be
stopped and restarted on the same ports, an MLflow server that can be stopped, a devhost that can be
SIGKILLed and started again with the same settings. After each fault every file must end scored exactly
once (its newest version, all its rows) or failed with a reason, and the host must be alive."""

from __future__ import annotations

import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devhost.services import Azurite, MlflowServer
from shared.scoring import blob_key
from tests.conftest import stop_devhost
from tests.reliability import figures
from tests.reliability.harness import (
    ACCOUNT,
    INPUT,
    OUTPUT,
    Stack,
    Version,
    check_invariants,
    restart_devhost,
    sample_csv,
    settled,
    start_stack,
    train_model,
    wait_all,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.reliability, pytest.mark.timeout(900)]

BIG_ROWS = 2_000_000


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Azurite, MlflowServer]]:
    root = tmp_path_factory.mktemp("faults")
    azurite = Azurite(data_dir=root / "azurite-data", log_dir=root).start()
    mlflow = MlflowServer(data_dir=root / "mlflow").start()
    try:
        model = train_model(mlflow.tracking_uri, prefix="fault")
        # A short alias TTL: with MLflow down the alias cannot be re-resolved, and scoring must go on.
        (root / "devhost").mkdir()
        stack = start_stack(root / "devhost", azurite, mlflow.tracking_uri, model=model,
                            extra={"SCOREHOOK_ALIAS_TTL_SECONDS": "5"})  # fmt: skip
        yield stack, azurite, mlflow
        stop_devhost(stack.dev)
    finally:
        mlflow.stop()
        azurite.stop()


def _poison() -> dict[str, tuple[bytes, str]]:
    from tests.security.corpus import _gzip, _stray_quote

    return {
        "stray-quote.csv": (_stray_quote(300, 120), "bad_file_format"),
        "corrupt.parquet": (b"PAR1" + b"\x00\xff" * 500 + b"PAR1", "bad_file_format"),
        "utf16.csv": (sample_csv(10).decode().encode("utf-16"), "not_utf8"),
        "header-only.csv": (sample_csv(0), "empty_file"),
        "truncated.csv.gz": (_gzip(sample_csv(300))[:-200], "bad_file_format"),
        "unknown.xlsx": (sample_csv(5), "unsupported_format"),
    }


def _upload_batch(stack: Stack, prefix: str, good: int, poison: bool) -> tuple[dict[str, list[Version]], set[str]]:
    files: dict[str, list[Version]] = {}
    bad: set[str] = set()
    items: list[tuple[str, bytes, int]] = [(f"{prefix}g{i:03d}.csv", sample_csv(30 + i, seed=i), 30 + i) for i in range(good)]
    if poison:
        for leaf, (data, _reason) in _poison().items():
            items.insert(len(items) // 2, (f"{prefix}{leaf}", data, 0))
            bad.add(f"{prefix}{leaf}")
    for name, data, rows in items:
        files[name] = [Version(stack.upload(INPUT, name, data), rows)]
    return files, bad


def _survived(section: str, stack: Stack, files: dict[str, list[Version]], prefix: str, bad: set[str],
              **extra: Any) -> tuple[bool, dict[str, Any]]:  # fmt: skip
    result = check_invariants(stack, INPUT, files, prefix, expect_failed=bad)
    problems = result.pop("problems")
    alive = stack.alive()
    deliveries = [d for d in stack.dev.deliveries() if prefix in (d.get("subject") or "") and "status" in d]
    ok = alive and not problems
    figures.add(section, delivered=len(deliveries), **result, crashes=int(not alive), **extra)
    figures.add("faults", injected=1, survived=int(ok))
    if not ok:
        figures.FIGURES["faults"].setdefault("failed", []).append(section)
    return ok, {"alive": alive, "problems": problems[:15], **{k: result[k] for k in ("files", "outputs", "lost", "duplicates")}}


def test_poison_files_fail_with_their_reason_and_block_nothing(faulty: tuple[Stack, Azurite, MlflowServer]) -> None:
    stack, _, _ = faulty
    prefix = f"fault-poison-{uuid.uuid4().hex[:6]}/"
    files, bad = _upload_batch(stack, prefix, good=20, poison=True)
    wait_all(stack, INPUT, files, timeout=120, prefix=prefix)
    reasons = {name: (stack.outcome(INPUT, name).record.get("reason")) for name in sorted(bad)}
    want = {f"{prefix}{leaf}": reason for leaf, (_, reason) in _poison().items()}
    ok, summary = _survived("fault-poison", stack, files, prefix, bad)
    assert ok, summary
    assert reasons == want


def test_azurite_stopped_and_restarted_mid_batch(faulty: tuple[Stack, Azurite, MlflowServer]) -> None:
    stack, azurite, _ = faulty
    prefix = f"fault-azurite-{uuid.uuid4().hex[:6]}/"
    files, bad = _upload_batch(stack, prefix, good=40, poison=True)
    deadline = time.monotonic() + 60
    while len(settled(stack, INPUT, files, prefix)) < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    settled_before = len(settled(stack, INPUT, files, prefix))
    azurite.stop()
    time.sleep(6)
    azurite.restart()
    wait_all(stack, INPUT, files, timeout=240, prefix=prefix)
    ok, summary = _survived("fault-azurite", stack, files, prefix, bad, settled_before_fault=settled_before)
    assert ok, summary


def test_mlflow_stopped(faulty: tuple[Stack, Azurite, MlflowServer]) -> None:
    """With the registry down, scoring goes on with the last resolved version (or fails transiently and is
    retried until the registry is back): every file ends scored once."""
    stack, _, mlflow = faulty
    prefix = f"fault-mlflow-{uuid.uuid4().hex[:6]}/"
    mlflow.stop()
    try:
        time.sleep(6)  # past the alias TTL: the alias must be re-resolved, and cannot be
        started = time.monotonic()
        files, _ = _upload_batch(stack, prefix, good=12, poison=False)
        wait_all(stack, INPUT, files, timeout=30, prefix=prefix)
        while_down = len(settled(stack, INPUT, files, prefix))
        down_for = time.monotonic() - started
    finally:
        mlflow.restart()
    wait_all(stack, INPUT, files, timeout=180, prefix=prefix)
    ok, summary = _survived("fault-mlflow", stack, files, prefix, set(), scored_while_down=while_down,
                            down_seconds=round(down_for, 1))  # fmt: skip
    assert ok, summary
    assert while_down == len(files), f"only {while_down}/{len(files)} files were scored while MLflow was down"


def _big_csv(path: Path) -> Path:
    from training.data import write_file

    if not path.exists():
        write_file(path, BIG_ROWS, fmt="csv", seed=77)
    return path


def _count_rows(stack: Stack, name: str) -> int:
    lines = 0
    for chunk in stack.blobs.get_blob_client(OUTPUT, name).download_blob(max_concurrency=2).chunks():
        lines += chunk.count(b"\n")
    return lines - 1


def test_devhost_sigkilled_mid_file_and_restarted(faulty: tuple[Stack, Azurite, MlflowServer],
                                                 tmp_path_factory: pytest.TempPathFactory) -> None:  # fmt: skip
    """devhost dies (SIGKILL) while scoring a 2 M-row file and is started again: its claim expires inside the
    retry window, the delivery comes again (the local Event Grid keeps it in Azurite), the file ends scored
    once, with every row."""
    stack, _, _ = faulty
    prefix = f"fault-kill-{uuid.uuid4().hex[:6]}/"
    name = f"{prefix}big.csv"
    path = _big_csv(tmp_path_factory.mktemp("big") / "big.csv")
    with open(path, "rb") as handle:
        etag = stack.blobs.get_blob_client(INPUT, name).upload_blob(handle, max_concurrency=2)["etag"]
    files = {name: [Version(etag, BIG_ROWS)]}
    key = blob_key(ACCOUNT, INPUT, name, etag)
    deadline, claimed = time.monotonic() + 120, False
    while time.monotonic() < deadline and not claimed:
        claimed = any(r["key"] in (key, urllib.parse.unquote(key)) and r["status"] == "claimed" for r in stack.ledger())
        time.sleep(0.2)
    time.sleep(2.0)  # well into the file
    scored_before_kill = stack.outcome(INPUT, name, etag).kind
    stack.dev.process.kill()
    stack.dev.process.wait(10)
    restart_devhost(stack)
    wait_all(stack, INPUT, files, timeout=300, prefix=prefix)
    outcome = stack.outcome(INPUT, name, etag)
    rows = _count_rows(stack, outcome.outputs[0][0]) if outcome.outputs else 0
    ok, summary = _survived("fault-sigkill", stack, files, prefix, set(), claimed_before_kill=int(claimed),
                            outcome_before_kill=scored_before_kill)  # fmt: skip
    assert claimed and scored_before_kill == "none", "the kill did not land mid-file"
    assert ok, summary
    assert rows == BIG_ROWS
