"""The ``scorehook`` command on the fakes: tables and pure JSON, exit codes, one-line errors, time limits."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

import pytest

from cli.app import Services, main
from shared.events import parse_blob_created

ROOT = Path(__file__).resolve().parents[2]
GOOD = b"id,x1,x2,color\n007,0.5,1.0,red\n008,-1.5,0.2,blue\n"
BAD = b"id,x1,x2,color\n007,zero,1.0,red\n"


class Injected(Services):
    """The CLI's services on the unit fakes (or a service that misbehaves)."""

    def __init__(self, scoring=None, fail: BaseException | None = None, timeout: float = 10) -> None:
        super().__init__(None, timeout)
        self._scoring, self._fail = scoring, fail

    def scoring(self):
        if self._fail is not None:
            raise self._fail
        return self._scoring.service

    def view(self, registry: bool = True):
        from shared.opsview import OpsView

        return OpsView.for_scoring(self.scoring(), registry=self._scoring.registry if self._scoring else None)


@pytest.fixture
def files(scoring):
    assert scoring.service.score(parse_blob_created(scoring.upload("ok.csv", GOOD))).status == "succeeded"
    assert scoring.service.score(parse_blob_created(scoring.upload("bad[red].csv", BAD))).status == "failed"
    return scoring


def test_status_is_tables_by_default_and_pure_json_with_json(files, capsys):
    assert main(["status"], services=Injected(files)) == 0
    text = capsys.readouterr().out
    assert "Files" in text and "failed_open" in text and "Open problems" in text
    assert "incoming/bad[red].csv" in text  # a name is never read as rich markup
    assert main(["status", "--json"], services=Injected(files)) == 0
    doc = json.loads(capsys.readouterr().out)  # the whole of stdout is one JSON document
    assert (doc["files"]["counts"]["scored"], doc["files"]["counts"]["failed_open"]) == (1, 1)
    assert main(["--json", "status"], services=Injected(files)) == 0  # the global flag too
    assert json.loads(capsys.readouterr().out)["models"][0]["champion"] == "1"


def test_trace_of_an_unknown_blob_is_a_finding_and_of_a_failed_one_names_reason_and_location(files, capsys):
    assert main(["trace", "incoming/nope.csv"], services=Injected(files)) == 1
    assert "nothing is known about incoming/nope.csv" in capsys.readouterr().err
    assert main(["trace", "incoming/bad[red].csv"], services=Injected(files)) == 0
    text = capsys.readouterr().out
    assert "bad_value" in text and "record failed/incoming/bad[red].csv." in text
    assert main(["trace", "nocontainer"], services=Injected(files)) == 2


@pytest.mark.parametrize(
    ("error", "code", "words"),
    [
        ("configuration", 3, "scorehook: configuration: "),
        ("storage", 4, "scorehook: unreachable: [storage_unavailable]"),
        ("bug", 1, "scorehook: unexpected error: RuntimeError: boom"),
    ],
)
def test_errors_are_one_line_with_their_exit_code(files, capsys, error, code, words):
    from shared.errors import ConfigurationError, StorageUnavailableError

    fail = {"configuration": ConfigurationError("SCOREHOOK_X has an invalid value 'y'"),
            "storage": StorageUnavailableError("storage answered 503"), "bug": RuntimeError("boom\nsecond line")}[error]  # fmt: skip
    assert main(["status"], services=Injected(files, fail=fail)) == code
    captured = capsys.readouterr()
    assert (
        captured.err.startswith(words) and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    )
    assert captured.out == ""


def test_a_usage_error_exits_2_in_one_line(files, capsys):
    assert main(["status", "--nope"], services=Injected(files)) == 2
    assert main(["models", "approve", "churn"], services=Injected(files)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "No such option: --nope" in err and "Missing argument" in err


def test_a_service_that_does_not_answer_is_given_up_on_after_the_timeout(files, capsys):
    class Hanging(Injected):
        def scoring(self):
            time.sleep(30)

    started = time.monotonic()
    assert main(["status"], services=Hanging(files, timeout=0.5)) == 4
    assert time.monotonic() - started < 10
    assert "no answer within 0.5 s" in capsys.readouterr().err


def test_a_closed_pipe_ends_the_command_quietly(files, monkeypatch, capsys):
    import os

    read, write = os.pipe()
    os.close(read)  # `scorehook status | head -1`: head has gone
    stdout = os.fdopen(write, "w")
    monkeypatch.setattr("sys.stdout", stdout)
    try:
        assert main(["status"], services=Injected(files)) == 0
    finally:
        monkeypatch.undo()
        stdout.close()
    assert "Traceback" not in capsys.readouterr().err


def test_replay_of_several_files_reports_each_and_fails_when_one_does(files, capsys):
    files.blobs.write_bytes("incoming", "bad[red].csv", GOOD)  # fixed: the replay scores it
    code = main(["replay", "incoming/ok.csv", "incoming/bad[red].csv", "incoming/gone.csv", "--json"],
                services=Injected(files))  # fmt: skip
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1 and [line["status"] for line in lines] == ["duplicate", "succeeded", "error"]
    assert lines[2]["reason"] == "blob_not_found"


def test_the_package_installs_the_scorehook_command():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    module, _, function = project["project"]["scripts"]["scorehook"].partition(":")
    assert (module, function) == ("cli.app", "run")
    assert callable(getattr(__import__(module, fromlist=[function]), function))
    assert "cli*" in project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    # a plain `pip install -e .` brings the CLI's own packages (typer, rich) with the runtime pins
    files = project["tool"]["setuptools"]["dynamic"]["dependencies"]["file"]
    pins = "".join((ROOT / f).read_text() for f in files)
    assert {"typer", "rich", "azure-functions"} <= {line.split("==")[0] for line in pins.splitlines() if "==" in line}


def test_the_installed_command_runs_from_any_directory(tmp_path):
    """`make` installs the package (`pip install -e .`): the venv's `scorehook` runs outside the checkout."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "scorehook"
    if not script.exists():
        pytest.skip("the package is not installed in this venv (make bootstraps it with pip install -e .)")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([str(script), "--settings", str(tmp_path / "none.json"), "status"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert done.returncode == 3 and "Traceback" not in done.stderr
    assert "none.json" in done.stderr and len(done.stderr.strip().splitlines()) == 1
