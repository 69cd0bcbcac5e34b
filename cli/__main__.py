"""``scorehook``: what happened to this file, and run it again.

    scorehook status                         # ledger counts, recent failures
    scorehook trace incoming/2026/a.csv      # every version of a file: claim, outcome, output lineage, failure record
    scorehook replay incoming/2026/a.csv     # score the file again, as it is now
    scorehook replay --failed [--route NAME] # every failed file (of one route)
    scorehook rollback MODEL                 # the previous champion becomes the champion again
    scorehook drift [MODEL] [--evaluate]     # the latest drift reports (decision, reasons, retraining)
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


def cmd_rollback(flow: Any, args: argparse.Namespace) -> int:
    outcome = flow.rollback(args.model)
    print(json.dumps({"model": args.model, "champion": outcome.champion, "status": "rolled back"}))
    return 0


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


def main(argv: list[str] | None = None) -> int:
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
    rollback = sub.add_parser("rollback", help="make the previous champion of a model the champion again")
    rollback.add_argument("model", help="registered model name")
    rollback.set_defaults(run=cmd_rollback, build="deployment")
    drift = sub.add_parser("drift", help="the latest drift reports: decision, reasons, retraining")
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
