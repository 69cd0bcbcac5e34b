"""``python -m devhost``: the local Functions host and its services.

python -m devhost run                    # Azurite + MLflow + devhost, until Ctrl-C (make run)
python -m devhost demo                   # the one-command demo (make demo)
python -m devhost host --settings F      # devhost alone, against services already running

`run` and `demo` hold the lock of their `.local` (`--local-dir`): one stack at a time. Exit codes: 0 done,
1 the demo did not see every outcome, 2 local.settings.user.json is unusable, 3 another stack is running
on that `.local` (the one line on stderr says which: pid, ports, since when), 4 the devhost port asked for
is in use.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from devhost.logconfig import configure_devhost_logging
from devhost.runtime import DevHost, register_mlflow_webhook
from devhost.services import PROJECT_ROOT
from devhost.stack import LocalStack, PortInUse, SettingsFileError, StackBusy
from shared.errors import ConfigurationError

LOCAL = PROJECT_ROOT / ".local"
EXIT_USER_SETTINGS, EXIT_BUSY, EXIT_PORT = 2, 3, 4


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


def open_stack(args: argparse.Namespace, command: str, **kwargs: object) -> LocalStack | int:
    """Start the local stack of ``args.local_dir``; an exit code (after one line on stderr) when it
    cannot start because another stack runs there or the user settings are unusable."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # stop what started so far
    local_dir = Path(args.local_dir)
    settings = Path(args.settings_out) if args.settings_out else PROJECT_ROOT / "local.settings.json"
    stack = LocalStack(local_dir, command=command, settings_path=settings, **kwargs)  # type: ignore[arg-type]
    try:
        return stack.start()
    except StackBusy as exc:
        print(f"devhost {command}: {exc}", file=sys.stderr, flush=True)
        return EXIT_BUSY
    except SettingsFileError as exc:
        print(f"devhost {command}: {exc}", file=sys.stderr, flush=True)
        return EXIT_USER_SETTINGS
    except PortInUse as exc:
        print(f"devhost {command}: {exc}", file=sys.stderr, flush=True)
        return EXIT_PORT


def cmd_run(args: argparse.Namespace) -> int:
    stack = open_stack(args, "run", devhost_port=args.port)
    if isinstance(stack, int):
        return stack
    assert stack.supervisor is not None and stack.mlflow is not None and stack.azurite is not None
    try:
        with DevHost.from_settings_file(stack.settings_path, services_health=stack.supervisor.states) as dev:
            secret = stack.settings["Values"]["SCOREHOOK_MLFLOW_WEBHOOK_SECRET"]
            register_mlflow_webhook(stack.mlflow.tracking_uri, dev.base_url, secret)
            print(
                json.dumps(
                    {
                        "devhost": dev.base_url,
                        "mlflow": stack.mlflow.tracking_uri,
                        "blob": stack.azurite.endpoints["blob"],
                        "settings": str(stack.settings_path),
                        "ports": stack.ports,
                        "pid": os.getpid(),
                    }
                ),
                flush=True,
            )
            print(
                f"MLflow UI {stack.mlflow.tracking_uri}  health {dev.base_url}/api/health  "
                f"function key: {stack.settings['Host']['FunctionKey']}  (Ctrl-C stops everything)",
                flush=True,
            )
            _wait_for_signal()
    finally:
        stack.stop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from devhost.demo import DEMO_SETTINGS, run_demo

    stack = open_stack(
        args, "demo", console_logs=False, extra=DEMO_SETTINGS, devhost_port=args.port,
        announce=lambda text: print(text, flush=True),
    )  # fmt: skip
    if isinstance(stack, int):
        return stack
    try:
        return run_demo(stack, rows=args.rows, files=args.files)
    finally:
        stack.stop()


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
    demo = sub.add_parser("demo", help="train, register, drop sample files and show what happened")
    demo.add_argument("--rows", type=int, default=2000)
    demo.add_argument("--files", type=int, default=4)
    for stack_command, handler in ((run, cmd_run), (demo, cmd_demo)):
        stack_command.add_argument(
            "--port",
            type=int,
            default=None,
            help="devhost's port (default: the last one, else 7071 when free)",
        )
        stack_command.add_argument(
            "--local-dir", default=str(LOCAL), help="where the stack keeps its data and lock"
        )
        stack_command.add_argument(
            "--settings-out", default=None, help="the local.settings.json to write (default: the checkout's); "
            "local.settings.user.json next to it is merged over it",
        )  # fmt: skip
        stack_command.set_defaults(run=handler)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigurationError as exc:  # one clear message, no traceback: devhost does not start
        print(f"devhost: not started: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
