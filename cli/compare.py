"""``scorehook drift compare``: offline, no service (files on disk, the app's drift policy).

Exit status: 0 no drift, 1 drift, 2 error, 3 insufficient data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shared.errors import ScorehookError

COMPARE_HELP = """Compare a reference dataset with current data offline, exactly as the drift monitor would:
files read as scoring reads them (CSV, CSV.gz, Parquet, JSON lines), the baseline built as the monitor
builds it, the current data profiled as scoring stores it, the same decision (shared.drift.compare_tables).
REFERENCE may also be a baseline artifact (a model's baseline/drift-profile.json). Several CURRENT files
form one window. The policy is the app's (SCOREHOOK_DRIFT_* settings, defaults otherwise); flags override.

exit status: 0 no drift, 1 drift, 2 error (unreadable file, no shared column, bad option),
             3 insufficient data (fewer rows than min_rows)"""
EXIT_NO_DRIFT, EXIT_DRIFT, EXIT_ERROR, EXIT_INSUFFICIENT = 0, 1, 2, 3


def _compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scorehook drift compare", description=COMPARE_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("reference", help="reference data file (or a baseline artifact .json)")
    parser.add_argument("current", nargs="+", help="current data file(s): one window")
    parser.add_argument("--json", action="store_true", help="print the drift report as JSON")
    parser.add_argument("--model", help="an ONNX model file: profile its inputs and its predictions")
    parser.add_argument("--numeric", help="comma-separated numeric features (default: the number columns)")
    parser.add_argument(
        "--categorical", help="comma-separated categorical features (default: text, booleans)"
    )
    parser.add_argument("--key", default="id", help="the row id column (default: id; positions without it)")
    for flag, field in (("--numeric-threshold", "numeric_threshold"), ("--categorical-threshold", "categorical_threshold"),
                        ("--quality-threshold", "quality_threshold"), ("--drift-share", "drift_share"),
                        ("--alpha", "alpha")):  # fmt: skip
        parser.add_argument(flag, dest=field, type=float, help=f"policy {field} (default: the app's setting)")
    parser.add_argument(
        "--min-rows", dest="min_rows", type=int, help="policy min_rows (default: the app's setting)"
    )
    return parser


def _reference(path: str) -> Any:
    """A baseline artifact (a JSON profile) as a dict, else the path of a data file."""
    from shared.drift.profile import PROFILE_FORMAT

    if path.lower().endswith(".json") and Path(path).is_file():
        try:
            doc = json.loads(Path(path).read_text())
        except (ValueError, UnicodeDecodeError):
            return path  # JSON lines, read as data
        if isinstance(doc, dict) and doc.get("format") == PROFILE_FORMAT:
            return doc
    return path


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _feature_row(f: Any) -> list[str]:
    if f.drifted:
        decision, reason = "DRIFT", f"{f.value:.4f} > {f.threshold} + {f.noise_bound:.4f}"
    elif f.quality_breaches:
        decision, reason = "QUALITY", ", ".join(f.quality_breaches)
    elif f.status != "evaluated":
        decision, reason = f.status, (f.reasons[0].split(": ", 1)[-1] if f.reasons else "")
    else:
        decision, reason = "ok", f"{f.value:.4f} <= {f.threshold} + {f.noise_bound:.4f}"
    if f.drifted and f.quality_breaches:
        reason += "; " + ", ".join(f.quality_breaches)
    return [_printable(f.name), f.kind, f.role, str(f.rows), f.metric or "-", _cell(f.value),
            _cell(f.noise_bound), "-" if f.threshold is None else str(f.threshold), decision, reason]  # fmt: skip


def _print_report(report: Any) -> None:
    header = [
        "feature",
        "kind",
        "role",
        "rows",
        "metric",
        "distance",
        "bound",
        "threshold",
        "decision",
        "reason",
    ]
    rows = [header] + [_feature_row(f) for f in report.features]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    print()
    flagged = [f.name for f in report.features if f.flagged]
    print(f"dataset: {report.decision.upper()}  ({report.rows:,} current rows vs {report.baseline_rows:,} "
          f"baseline rows; drifted share {report.drifted_share:.3f} of {report.policy.drift_share}; "
          f"prediction drift {report.prediction_drift})")  # fmt: skip
    print(f"flagged: {', '.join(_printable(n) for n in flagged) or 'none'}")
    for reason in report.reasons:
        print(f"  - {_printable(reason)}")


def cmd_drift_compare(argv: list[str], settings_path: str | None) -> int:
    """``scorehook drift compare``: runs without any service (see ``COMPARE_HELP``)."""
    import dataclasses

    parser = _compare_parser()
    args = parser.parse_args(argv)
    from shared.drift.offline import compare_tables, policy_from_settings

    def split(value: str | None) -> list[str] | None:
        return [v.strip() for v in value.split(",") if v.strip()] if value else None

    try:
        from cli.config import load_settings

        policy = policy_from_settings(load_settings(settings_path))
        overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(policy)
                     if getattr(args, f.name, None) is not None}  # fmt: skip
        policy = dataclasses.replace(policy, **overrides)
        model = None
        if args.model:
            from shared.models import OnnxModel

            model = OnnxModel.from_file(args.model)
        report = compare_tables(
            _reference(args.reference), args.current, policy, model=model,
            numeric=split(args.numeric), categorical=split(args.categorical), key=args.key,
        )  # fmt: skip
    except ScorehookError as exc:
        if args.json:
            print(json.dumps({"error": exc.to_record()}, default=str))
        print(_printable(f"scorehook drift compare: [{exc.reason}] {exc}"), file=sys.stderr)
        return EXIT_ERROR
    except FileNotFoundError as exc:  # a settings file that does not exist: an error, not "drift"
        print(f"scorehook drift compare: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (OSError, ValueError) as exc:  # e.g. a model file that does not load
        print(_printable(f"scorehook drift compare: {type(exc).__name__}: {exc}"), file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(report.to_json(), indent=1, default=str))
    else:
        _print_report(report)
    return {"drift": EXIT_DRIFT, "insufficient_data": EXIT_INSUFFICIENT}.get(report.decision, EXIT_NO_DRIFT)


def _printable(text: str) -> str:
    """Untrusted text (names from events) for a terminal: control characters escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
