"""``scorehook``: what happened to this file, and run it again.

    scorehook status                         # ledger counts, recent failures
    scorehook trace incoming/2026/a.csv      # every version of a file: claim, outcome, output lineage, failure record
    scorehook replay incoming/2026/a.csv     # score the file again, as it is now
    scorehook replay --failed [--route NAME] # every failed file (of one route)
    scorehook models approve NAME VERSION [--reason TEXT]          # promote a held version (once)
    scorehook models rollback NAME [--to VERSION] [--reason TEXT]  # an earlier champion again (once)
    scorehook rollback MODEL [--to VERSION] [--reason TEXT]        # the same as models rollback
    scorehook drift [MODEL] [--evaluate]     # the latest drift reports (decision, reasons, retraining)
    scorehook drift compare REF CUR [--json] # offline: would the monitor flag CUR against REF? (no services)
    scorehook deadletters [--replay] [--json] # events Event Grid gave up on; score their files again

Settings come from the environment, or from ``local.settings.json`` (``--settings``) for local runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from shared.errors import ScorehookError


def _settings(path: str | None) -> Any:
    """App settings: ``local.settings.json`` Values (if there), overridden by the environment."""
    from shared.settings import Settings

    env: dict[str, str] = {}
    candidate = Path(path or "local.settings.json")
    if candidate.exists():
        env.update(json.loads(candidate.read_text()).get("Values", {}))
    elif path:
        raise SystemExit(f"settings file {path} does not exist")
    env.update(os.environ)
    return Settings.from_env(env)


def _split(blob: str) -> tuple[str, str]:
    container, _, name = blob.partition("/")
    if not name:
        raise SystemExit(f"name a blob as CONTAINER/PATH, not {blob!r}")
    return container, name


def cmd_status(service: Any, args: argparse.Namespace) -> int:
    records = list(service.ledger.records())
    counts: dict[str, int] = {}
    for record in records:
        counts[record.status] = counts.get(record.status, 0) + 1
    print(json.dumps({"ledger": counts, "routes": [r.name for r in service.routes]}))
    failed = [r for r in records if r.status == "failed"][-args.last :]
    for record in failed:
        print(f"failed  {record.details.get('blob', record.key)}  [{record.details.get('reason')}] "
              f"{record.details.get('message')}")  # fmt: skip
    return 0


def cmd_trace(service: Any, args: argparse.Namespace) -> int:
    from shared.scoring import output_name

    container, name = _split(args.blob)
    found = False
    for record in service.ledger.records():
        if record.details.get("blob") == f"{container}/{name}":
            found = True
            print(json.dumps({"key": record.key, "status": record.status, "owner": record.owner,
                              "attempts": record.attempts, **record.details}, default=str))  # fmt: skip
    for route in service.routes:
        if route.matches(route.account or "", container, name):
            output = output_name(container, name, route.output_format)
            try:
                info = service.blobs.properties(route.output_container, output)
            except ScorehookError:
                continue
            found = True
            print(
                json.dumps({"output": f"{route.output_container}/{output}", "lineage": dict(info.metadata)})
            )
    for info in service.blobs.list_blobs(service.settings.failed_container, prefix=f"{container}/{name}."):
        found = True
        record = json.loads(service.blobs.read_bytes(service.settings.failed_container, info.name))
        record.pop("event", None)
        print(json.dumps({"failure_record": f"{service.settings.failed_container}/{info.name}", **record}))
    if not found:
        print(f"nothing is known about {container}/{name}", file=sys.stderr)
        return 1
    return 0


def cmd_replay(service: Any, args: argparse.Namespace) -> int:
    if args.failed:
        targets = [r.details.get("blob") for r in service.ledger.records("failed")
                   if r.details.get("blob") and (not args.route or r.details.get("route") == args.route)]  # fmt: skip
    elif args.blob:
        targets = [args.blob]
    else:
        raise SystemExit("name a blob, or use --failed")
    worst = 0
    for target in dict.fromkeys(targets):
        container, name = _split(target)
        try:
            outcome = service.replay(container, name)
        except ScorehookError as exc:
            print(json.dumps({"blob": target, "status": "error", **exc.to_record()}))
            worst = 1
            continue
        print(json.dumps({"blob": target, "status": outcome.status, "output": outcome.output,
                          "reason": outcome.reason, "failure": outcome.failure}))  # fmt: skip
        worst = worst or int(outcome.status == "failed")
    return worst


EXIT_REFUSED = 2
_MODEL_EXIT = {"promote": 0, "unchanged": 0, "duplicate": 0, "reject": 1, "ignored": EXIT_REFUSED,
               "refused": EXIT_REFUSED}  # fmt: skip


def _operator() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _model_outcome(model: str, version: str | None, run: Any) -> int:
    """Print one JSON line for an approval or rollback; a refusal also on stderr, in words."""
    try:
        outcome = run()
    except ScorehookError as exc:
        print(json.dumps({"model": model, "version": version, "status": "error", **exc.to_record()}, default=str))
        print(_printable(f"scorehook models: [{exc.reason}] {exc}"), file=sys.stderr)
        return 1
    print(json.dumps({"model": model, "version": version, "status": outcome.status, "champion": outcome.champion,
                      "message": outcome.message}))  # fmt: skip
    if outcome.status in ("refused", "ignored"):
        print(_printable(f"scorehook models: {outcome.message}"), file=sys.stderr)
    return _MODEL_EXIT.get(outcome.status, 1)


def cmd_rollback(flow: Any, args: argparse.Namespace) -> int:
    """``models rollback``: exit 0 when rolled back or nothing to change, 2 when refused."""
    return _model_outcome(args.model, args.to, lambda: flow.rollback(
        args.model, args.to, reason=args.reason, by=_operator()))  # fmt: skip


def cmd_approve(flow: Any, args: argparse.Namespace) -> int:
    """``models approve``: exit 0 when promoted (or approved already), 1 when a newer champion stays, 2 when
    refused (unknown model or version, not held)."""
    from shared.registrations import ApprovalGranted

    approval = ApprovalGranted(args.model, args.version, "cli")
    return _model_outcome(args.model, args.version, lambda: flow.approve(
        approval, by=_operator(), reason=args.reason))  # fmt: skip


def cmd_drift(monitor: Any, args: argparse.Namespace) -> int:
    if args.evaluate:
        monitor.evaluate_due()
    reports = list(monitor.store.reports(args.model))[-args.last :]
    keys = ("model", "model_version", "window", "rows", "decision", "drifted_share", "drifted_features",
            "evaluated_at", "action", "report")  # fmt: skip
    for report in reports:
        print(json.dumps({key: report.get(key) for key in keys}))
        for reason in report.get("reasons", [])[: args.reasons]:
            print(f"  - {reason}")
    if not reports:
        print(json.dumps({"model": args.model, "reports": 0}))
    return 0


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
    parser.add_argument("--categorical", help="comma-separated categorical features (default: text, booleans)")
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
        policy = policy_from_settings(_settings(settings_path))
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
    except SystemExit as exc:  # a settings file that does not exist: an error, not "drift"
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


def cmd_deadletters(service: Any, args: argparse.Namespace) -> int:
    from shared.deadletters import DeadLetterService

    dead = DeadLetterService.for_scoring(service, container=args.container)
    if args.replay:
        worst = 0
        results = dead.replay()
        for result in results:
            line = result.as_dict()
            if args.json:
                print(json.dumps(line, default=str))
            else:
                print(_printable(f"{result.status:<10} {result.blob}  {line.get('output') or line.get('failure') or ''}"
                                 f"{'  [' + result.reason + ']' if result.reason else ''}  ({result.dead_letter.location})"))  # fmt: skip
            worst = worst or int(result.status in ("failed", "error"))
        if not results:
            print("no dead letter to replay", file=sys.stderr)
        return worst
    count = 0
    for letter in dead.dead_letters():
        count += 1
        line = {"time": letter.time, "subscription": letter.subscription, "reason": letter.reason,
                "event_type": letter.event_type, "subject": letter.subject, "event_id": letter.event_id,
                "attempts": letter.attempts, "last_http_status": letter.last_status, "problem": letter.problem,
                "replayed": dead.replay_status(letter), "dead_letter": letter.location}  # fmt: skip
        if args.json:
            print(json.dumps(line, default=str))
        else:
            text = "  ".join(str(line[k] if line[k] is not None else "-") for k in
                             ("time", "subscription", "reason", "event_type", "subject"))
            print(_printable(text + f"  replayed={line['replayed']}"
                             + (f"  problem: {letter.problem}" if letter.problem else "")))  # fmt: skip
    if not count:
        print(f"no dead letters in {dead.container}", file=sys.stderr)
    return 0


def _rollback_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="registered model name")
    parser.add_argument("--to", help="the version to make champion (default: the newest earlier champion)")
    parser.add_argument("--reason", help="why (recorded in the ledger and on the versions' tags)")
    parser.set_defaults(run=cmd_rollback, build="deployment")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--settings")
    known, rest = pre.parse_known_args(argv)
    if rest[:2] == ["drift", "compare"]:  # offline: no service is built
        return cmd_drift_compare(rest[2:], known.settings)
    parser = argparse.ArgumentParser(prog="scorehook", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--settings", help="a local.settings.json to read app settings from")
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="ledger counts and recent failures")
    status.add_argument("--last", type=int, default=10)
    status.set_defaults(run=cmd_status)
    trace = sub.add_parser("trace", help="what happened to a file")
    trace.add_argument("blob", help="CONTAINER/PATH of the input blob")
    trace.set_defaults(run=cmd_trace)
    replay = sub.add_parser("replay", help="score a file (or every failed file) again")
    replay.add_argument("blob", nargs="?", help="CONTAINER/PATH of the input blob")
    replay.add_argument("--failed", action="store_true", help="replay every failed file")
    replay.add_argument("--route", help="with --failed: only this route's files")
    replay.set_defaults(run=cmd_replay)
    rollback = sub.add_parser("rollback", help="make an earlier champion of a model the champion again")
    _rollback_arguments(rollback)
    models = sub.add_parser("models", help="approve a held version, roll a champion back (recorded, idempotent)")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    approve = models_sub.add_parser("approve", help="promote a version the policy held for approval")
    approve.add_argument("model", help="registered model name")
    approve.add_argument("version", help="the held version")
    approve.add_argument("--reason", help="why (recorded in the ledger and on the version's tags)")
    approve.set_defaults(run=cmd_approve, build="deployment")
    _rollback_arguments(models_sub.add_parser("rollback", help="make an earlier champion the champion again"))
    drift = sub.add_parser("drift", help="the latest drift reports: decision, reasons, retraining",
                           epilog="scorehook drift compare REFERENCE CURRENT... checks data offline "
                                  "(scorehook drift compare --help)")  # fmt: skip
    drift.add_argument("model", nargs="?", help="registered model name (default: all)")
    drift.add_argument("--evaluate", action="store_true", help="evaluate the changed windows first")
    drift.add_argument("--last", type=int, default=5)
    drift.add_argument("--reasons", type=int, default=8, help="reasons shown per report")
    drift.set_defaults(run=cmd_drift, build="drift")
    deadletters = sub.add_parser("deadletters", help="events Event Grid gave up on (dead letters); --replay scores their files")
    deadletters.add_argument("--replay", action="store_true", help="score every dead-lettered file not replayed yet")
    deadletters.add_argument("--json", action="store_true", help="one JSON object per line")
    deadletters.add_argument("--container", help="the dead-letter container (default: SCOREHOOK_DEADLETTER_CONTAINER)")
    deadletters.set_defaults(run=cmd_deadletters)
    args = parser.parse_args(argv)
    from shared.logs import configure_logging
    from shared.services import build_deployment_service, build_drift_monitor, build_scoring_service

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    settings = _settings(args.settings)
    configure_logging("WARNING", console=True)
    builders = {"deployment": build_deployment_service, "drift": build_drift_monitor}
    build = builders.get(getattr(args, "build", ""), build_scoring_service)
    return int(args.run(build(settings), args))


if __name__ == "__main__":
    sys.exit(main())
