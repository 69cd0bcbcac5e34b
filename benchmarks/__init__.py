"""Side-by-side performance measurements of the scoring engine against its baselines (``python -m benchmarks``).

Every measurement runs in a fresh child process (``python -m benchmarks.run_one NAME ARGS``) that reports its
wall time and its own peak RSS, so figures are measured in the same run and memory is per measurement.
Generated data and trained models are cached under ``.local/bench/``. See ``benchmarks/README.md``.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".local" / "bench"
