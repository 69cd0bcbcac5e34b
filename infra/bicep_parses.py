"""Fail when checkov's Bicep parser (pycep) cannot read a file of infra/: checkov counts such a file as a
parsing error and scans nothing in it, yet exits 0. Run with the checkov venv: `make lint`.

Example:
    .local/checkov/bin/python infra/bicep_parses.py infra   # prints "4 Bicep files parse" or the failures
"""

from __future__ import annotations

import sys
from pathlib import Path

from pycep import BicepParser


def main(root: str) -> int:
    parser, failures = BicepParser(add_line_numbers=True), []
    files = sorted(Path(root).rglob("*.bicep"))
    for path in files:
        try:
            parser.parse(text=path.read_text())
        except Exception as exc:  # lark raises several unrelated types
            failures.append(f"{path}: {str(exc).splitlines()[0]}")
    print("\n".join(failures) or f"{len(files)} Bicep files parse")
    return 1 if failures or not files else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "infra"))
