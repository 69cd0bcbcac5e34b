"""The ops page in a real headless browser (Debian's chromium through chromedriver) through devhost: it needs
the function key, its drift plots carry the numbers of the drift reports that exist, and its replay button
scores a fixed file again (the ledger says so).

Files under ``incoming/auto/`` are delivered by the local Event Grid; ``incoming/manual/`` is outside the
subscription, so only a replay ever scores a file there."""

from __future__ import annotations

import io
import json
import time
import uuid
from datetime import datetime
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from tests.conftest import start_devhost, stop_devhost

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
WINDOW_SECONDS = 2
SUBSCRIPTIONS = {
    "topics": {"scorehook-events": {"keySetting": "SCOREHOOK_EVENTS_TOPIC_KEY"}},
    "delivery": {"retryDelaysSeconds": [1, 2], "blobPollIntervalSeconds": 0.05},
    "subscriptions": [
        {"name": "score-auto-blobs", "source": {"storageAccount": "devstoreaccount1"},
         "filter": {"includedEventTypes": ["Microsoft.Storage.BlobCreated"],
                    "subjectBeginsWith": "/blobServices/default/containers/incoming/blobs/auto/"},
         "endpoint": {"type": "eventgrid", "functionName": "score_blob"}, "eventDeliverySchema": "EventGridSchema"},
    ],
}  # fmt: skip


def _csv(rows: int, seed: int, drift: float = 0.0) -> bytes:
    from training.data import generate

    sink = io.BytesIO()
    pacsv.write_csv(generate(rows, seed=seed, drift=drift, start=seed * 1_000_000, include_label=False), sink)
    return sink.getvalue()


def _broken(data: bytes, line: int, column: str) -> bytes:
    """``data`` with a word where a number belongs, on 1-based file ``line``."""
    lines = data.decode().splitlines()
    header = [h.strip('"') for h in lines[0].split(",")]
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = "abc"
    lines[line - 1] = ",".join(cells)
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def stack(azurite, mlflow_tracking_uri, tmp_path_factory):
    from azure.storage.blob import BlobServiceClient

    from training.train import train_and_register

    name, unique = f"ops-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:8]
    train_and_register(mlflow_tracking_uri, model_name=name, rows=1000, seed=1, alias="champion")
    tmp = tmp_path_factory.mktemp("ops")
    subscriptions = tmp / "subscriptions.json"
    subscriptions.write_text(json.dumps(SUBSCRIPTIONS))
    drift = f"drift{unique}"
    dev = start_devhost(tmp, azurite, mlflow_tracking_uri, subscriptions=subscriptions, extra={
        "SCOREHOOK_MODEL_URI": f"models:/{name}@champion", "SCOREHOOK_LEDGER_TABLE": f"ops{unique}",
        "SCOREHOOK_FAILED_CONTAINER": f"failed{unique}", "SCOREHOOK_OUTPUT_CONTAINER": f"scored{unique}",
        "SCOREHOOK_DEADLETTER_CONTAINER": f"dead{unique}", "SCOREHOOK_DRIFT_CONTAINER": drift,
        "SCOREHOOK_DRIFT_SCHEDULE": "*/1 * * * * *", "SCOREHOOK_DRIFT_WINDOW_SECONDS": str(WINDOW_SECONDS),
        "SCOREHOOK_DRIFT_LOOKBACK_WINDOWS": "100",  # a cold first scoring takes longer than a window
        "SCOREHOOK_RETRAIN_LAUNCHER": "none", "SCOREHOOK_ALIAS_TTL_SECONDS": "3600",
    })  # fmt: skip
    try:
        blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
        if not blobs.get_container_client("incoming").exists():
            blobs.create_container("incoming")
        dev.blobs, dev.drift, dev.name = blobs, blobs.get_container_client(drift), name  # type: ignore[attr-defined]
        yield dev
    finally:
        stop_devhost(dev)


def _reports(stack) -> list[dict]:
    """The drift reports of the stack's model that are final (their action recorded)."""
    if not stack.drift.exists():
        return []
    docs = [json.loads(stack.drift.download_blob(b.name).readall())
            for b in stack.drift.list_blobs(name_starts_with=f"reports/{stack.name}/")]  # fmt: skip
    return [d for d in docs if d.get("source_etag")]


def _score(stack, name: str, data: bytes) -> None:
    stack.blobs.get_blob_client("incoming", name).upload_blob(data, overwrite=True)
    out = stack.blobs.get_blob_client(
        stack.env["SCOREHOOK_OUTPUT_CONTAINER"], f"incoming/{name}.predictions.csv"
    )
    stack.wait_for(out.exists, timeout=30, what=f"{name} scored")


def _ledger(stack):
    from shared.adapters import TableLedger
    from shared.settings import Settings

    return TableLedger.from_settings(Settings.from_env(stack.env), create=False)


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"Debian chromium is not installed ({CHROMIUM}, {CHROMEDRIVER}): `make test` installs it")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_ops_page_shows_the_drift_reports_and_its_replay_button_scores_the_fixed_file(stack, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # two drift reports in two windows: a quiet file, then a drifted one once the first window has closed
    _score(stack, "auto/quiet.csv", _csv(600, seed=2))
    first = stack.wait_for(lambda: _reports(stack), timeout=30, what="the first drift report")
    end = datetime.fromisoformat(first[0]["window"][1].replace("Z", "+00:00")).timestamp()
    time.sleep(max(0.0, end - time.time() + 0.2))
    _score(stack, "auto/drifted.csv", _csv(600, seed=3, drift=1.0))
    reports = stack.wait_for(lambda: (found := _reports(stack)) and len(found) >= 2 and found, timeout=30,
                             what="the second window's drift report")  # fmt: skip

    # a broken file, scored once by hand (JSON replay): an open failure with its place in the file
    bad = "manual/<b>bad</b>.csv"
    good = _csv(60, seed=4)
    stack.blobs.get_blob_client("incoming", bad).upload_blob(_broken(good, 3, "x01"))
    status, _, body = stack.request("POST", "/api/ops/replay", {"blob": f"incoming/{bad}"},
                                    {"x-functions-key": stack.function_key, "Content-Type": "application/json"})  # fmt: skip
    assert (status, json.loads(body)["status"], json.loads(body)["reason"]) == (200, "failed", "bad_value"), (
        body
    )

    for hostile in ("incoming/../../etc/passwd", "incoming", "incoming/nothing-here.csv"):
        status, _, body = stack.request("POST", "/api/ops/replay", {"blob": hostile},
                                        {"x-functions-key": stack.function_key, "Content-Type": "application/json"})  # fmt: skip
        assert status == 400 and json.loads(body)["status"] == "error", (hostile, body)

    assert stack.request("GET", "/api/ops")[0] == 401
    assert stack.request("GET", "/api/ops?code=wrong")[0] == 401
    assert stack.request("POST", "/api/ops/replay", {"blob": f"incoming/{bad}"},
                         {"Content-Type": "application/json"})[0] == 401  # fmt: skip

    browser.get(f"{stack.base_url}/api/ops?code={stack.function_key}")
    assert browser.title == "Scorehook ops"
    # the plots: one per feature that has a distance, each point the value and bound of one stored report
    expected: dict[str, set[tuple[str, float, float]]] = {}
    for report in reports:
        for f in report["features"]:
            if f.get("value") is not None:
                bound = round(f["threshold"] + (f.get("noise_bound") or 0.0), 6)
                expected.setdefault(f["name"], set()).add(
                    (report["evaluated_at"], round(f["value"], 6), bound)
                )
    shown: dict[str, set[tuple[str, float, float]]] = {}
    for svg in browser.find_elements(By.CSS_SELECTOR, "svg.plot"):
        assert svg.get_attribute("data-model") == stack.name
        points = svg.find_elements(By.CSS_SELECTOR, "circle.point")
        assert len(points) == int(svg.get_attribute("data-points")) == 2
        shown[svg.get_attribute("data-feature")] = {
            (
                p.get_attribute("data-at"),
                float(p.get_attribute("data-value")),
                float(p.get_attribute("data-bound")),
            )
            for p in points
        }
        assert svg.find_elements(By.CSS_SELECTOR, "polyline.bound") and svg.size["width"] > 100
    assert shown == expected and len(shown) >= 5
    drifted = {r["evaluated_at"]: set(r["drifted_features"]) for r in reports}
    marked = {(svg.get_attribute("data-feature"), p.get_attribute("data-at"))
              for svg in browser.find_elements(By.CSS_SELECTOR, "svg.plot")
              for p in svg.find_elements(By.CSS_SELECTOR, "circle.point.drifted")}  # fmt: skip
    assert marked == {(f, at) for at, names in drifted.items() for f in names if f in shown}

    # the files and the open failure, the hostile name shown as text
    files = browser.find_element(By.CSS_SELECTOR, "#files").text
    assert "incoming/auto/quiet.csv" in files and "incoming/auto/drifted.csv" in files
    failures = browser.find_element(By.CSS_SELECTOR, "#failures")
    assert f"incoming/{bad}" in failures.text and "bad_value" in failures.text and "line 3" in failures.text
    assert not browser.find_elements(By.CSS_SELECTOR, "#failures td b")

    # fix the file, press its replay button: the page comes back with the outcome, the ledger has it scored
    stack.blobs.get_blob_client("incoming", bad).upload_blob(good, overwrite=True)
    button = failures.find_element(By.CSS_SELECTOR, "button[data-blob]")
    assert button.get_attribute("data-blob") == f"incoming/{bad}"
    button.click()
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "notice"))
    assert browser.find_element(By.ID, "notice").text == f"replayed incoming/{bad}: succeeded"
    assert "no open failure" in browser.find_element(By.CSS_SELECTOR, "#failures").text
    records = [r for r in _ledger(stack).records() if r.details.get("blob") == f"incoming/{bad}"]
    assert sorted(r.status for r in records) == ["failed", "succeeded"]
    assert next(r for r in records if r.status == "succeeded").details["rows_scored"] == 60
