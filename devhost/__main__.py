"""``python -m devhost``: the local Functions host and its services.

python -m devhost run                    # Azurite + MLflow + devhost, until Ctrl-C (make run)
python -m devhost demo                   # the one-command demo (make demo)
python -m devhost host --settings F      # devhost alone, against services already running
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from devhost.logconfig import configure_devhost_logging
from devhost.runtime import DevHost, local_settings, register_mlflow_webhook
from devhost.services import PROJECT_ROOT, Azurite, MlflowServer, free_port
from shared.errors import ConfigurationError

LOCAL = PROJECT_ROOT / ".local"


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def cmd_host(args: argparse.Namespace) -> int:
    dev = DevHost.from_settings_file(
        args.settings,
        app_spec=args.app,
        subscriptions=args.subscriptions,
        **({"port": args.port} if args.port is not None else {}),
    )
    with dev:
        print(f"devhost listening on {dev.base_url}", flush=True)
        _wait_for_signal()
    return 0


def start_services(persistent: bool) -> tuple[Azurite, MlflowServer]:
    """Start Azurite and MLflow (their data under ``.local/`` when ``persistent``)."""
    LOCAL.mkdir(exist_ok=True)
    azurite = Azurite(data_dir=LOCAL / "azurite" if persistent else None, log_dir=LOCAL / "logs").start()
    mlflow = MlflowServer(data_dir=LOCAL / "mlflow", log_dir=LOCAL / "logs").start()
    return azurite, mlflow


def write_settings(
    azurite: Azurite,
    mlflow: MlflowServer,
    port: int,
    console_logs: bool = True,
    extra: dict[str, str] | None = None,
) -> dict:
    settings = local_settings(
        azurite, mlflow.tracking_uri, port, log_file=str(LOCAL / "logs" / "scorehook.jsonl")
    )
    settings["Values"]["SCOREHOOK_LOG_CONSOLE"] = "true" if console_logs else "false"
    settings["Values"].update(extra or {})
    (PROJECT_ROOT / "local.settings.json").write_text(json.dumps(settings, indent=2))
    return settings


def cmd_run(args: argparse.Namespace) -> int:
    azurite, mlflow = start_services(persistent=True)
    try:
        settings = write_settings(azurite, mlflow, args.port or free_port())
        with DevHost.from_settings_file(PROJECT_ROOT / "local.settings.json") as dev:
            secret = settings["Values"]["SCOREHOOK_MLFLOW_WEBHOOK_SECRET"]
            register_mlflow_webhook(mlflow.tracking_uri, dev.base_url, secret)
            print(
                json.dumps(
                    {
                        "devhost": dev.base_url,
                        "mlflow": mlflow.tracking_uri,
                        "blob": azurite.endpoints["blob"],
                        "settings": "local.settings.json",
                    }
                ),
                flush=True,
            )
            print(f"function key: {settings['Host']['FunctionKey']}  (Ctrl-C stops everything)", flush=True)
            _wait_for_signal()
    finally:
        mlflow.stop()
        azurite.stop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from devhost.demo import run_demo

    return run_demo(rows=args.rows, files=args.files)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    configure_devhost_logging()  # devhost's warnings and tracebacks in the app's structured stream
    parser = argparse.ArgumentParser(
        prog="python -m devhost", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    host = sub.add_parser("host", help="run devhost against services that are already running")
    host.add_argument("--settings", default=str(PROJECT_ROOT / "local.settings.json"))
    host.add_argument("--app", default="function_app:app")
    host.add_argument("--subscriptions", default=str(PROJECT_ROOT / "devhost" / "subscriptions.json"))
    host.add_argument("--port", type=int, default=None)
    host.set_defaults(run=cmd_host)
    run = sub.add_parser("run", help="start Azurite, MLflow and devhost until Ctrl-C")
    run.add_argument("--port", type=int, default=7071)
    run.set_defaults(run=cmd_run)
    demo = sub.add_parser("demo", help="train, register, drop sample files and show what happened")
    demo.add_argument("--rows", type=int, default=2000)
    demo.add_argument("--files", type=int, default=4)
    demo.set_defaults(run=cmd_demo)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigurationError as exc:  # one clear message, no traceback: devhost does not start
        print(f"devhost: not started: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
