"""``python -m benchmarks.run_one KIND JSON_ARGS``: one measurement in a fresh process.

Prints one line ``BENCH_RESULT {...}`` on stdout: the measurement's result plus this process's peak RSS
(``VmHWM``), so memory figures belong to this measurement alone. SIGTERM exits cleanly (``finally``
blocks run), so a timed-out e2e run still stops the services it started.
"""

from __future__ import annotations

import json
import signal
import sys

MARKER = "BENCH_RESULT "


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident set size (``VmHWM``) of a process, in MB (10^6 bytes)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    kind, args = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    from benchmarks.measures import MEASURES

    result = MEASURES[kind](**args)
    result.setdefault("peak_rss_mb", peak_rss_mb())
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
