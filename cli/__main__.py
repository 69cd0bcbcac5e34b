"""``python -m cli`` (and ``./scorehook``): the installed ``scorehook`` command (see ``cli.app``)."""

from __future__ import annotations

import sys

from cli.app import main

if __name__ == "__main__":
    sys.exit(main())
