"""What the deployment flow decides, with a real MLflow server sending signed webhooks to devhost: broken
model folders are rejected with their reason and the champion alias stays; a candidate needing a subset of the
route's columns is evaluated; MLflow's test payload is ignored and the real v1 decided; a deleted and
re-created model gets its new v1 decided; a 60,000-character tag does not stop a decision; a queue that is
down during a delivery answers 5xx and MLflow's retry gets the version decided.

devhost reaches Azurite's queue service through a TCP relay the tests can stop (blob and table stay up)."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time

import numpy as np
import pytest

from tests.conftest import registry_devhost
from tests.e2e.test_deployment_e2e import _noise_model, _other_inputs_model, log_lines, register_onnx

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


class Relay:
    """A TCP relay to one port on loopback; :meth:`stop` refuses connections (and cuts open ones)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._server: socket.socket | None = None
        self._open: list[socket.socket] = []

    def start(self) -> Relay:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):  # wakes the accept() blocked in the relay's thread (a bare
                self._server.shutdown(socket.SHUT_RDWR)  # close() would leave it listening until then)
            self._server.close()
            self._server = None
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.close()
        self._open.clear()


@pytest.fixture(scope="module")
def relay(azurite):
    port = int(re.search(r":(\d+)", azurite.endpoints["queue"]).group(1))
    relay = Relay(port).start()
    yield relay
    relay.stop()


@pytest.fixture(scope="module")
def env(azurite, relay, tmp_path_factory):
    connection = re.sub(r"QueueEndpoint=http://127\.0\.0\.1:\d+", f"QueueEndpoint=http://127.0.0.1:{relay.port}",
                        azurite.connection_string)  # fmt: skip
    assert connection != azurite.connection_string
    with registry_devhost(azurite, tmp_path_factory, "validate",
                          extra={"DataStorage": connection, "AzureWebJobsStorage": connection}) as dev:  # fmt: skip
        yield dev


@pytest.fixture(scope="module")
def champion(env):
    from training.train import train_and_register

    version = train_and_register(env.mlflow.tracking_uri, model_name=env.name, rows=4000, seed=1)["version"]
    env.wait_for(lambda: _champion(env, env.name) == version, timeout=120, what="first version promoted")
    return version


def _champion(env, name: str) -> str | None:
    try:
        return env.client.get_model_version_by_alias(name, "champion").version
    except Exception:
        return None


def _decided(env, name: str, version: str, timeout: float = 120) -> dict:
    def tags() -> dict | None:
        try:
            found = env.client.get_model_version(name, version).tags
        except Exception:
            return None
        return found if "scorehook.decision" in found else None

    return env.wait_for(tags, timeout=timeout, what=f"decision on {name} v{version}")


def _deliveries(env, version: str) -> list[dict]:
    """The webhook's lines about ``model_version.created`` deliveries of one version of the env's model."""
    return [line for line in log_lines(env) if line.get("message") == "webhook delivery"
            and line.get("kind") == "ModelVersionRegistered" and line.get("model") == env.name
            and line.get("model_version") == version]  # fmt: skip


def _good_onnx(rows: int = 3000, seed: int = 4) -> bytes:
    from training.data import generate
    from training.train import to_onnx, train

    table = generate(rows, seed=seed, include_label=True)
    return to_onnx(train(table, kind="linear"), table.slice(0, 500))


def _subset_onnx() -> bytes:
    from tests.unit.test_deployment import _subset_model
    from training.data import generate

    return _subset_model(generate(3000, seed=6, include_label=True))


def test_broken_model_folders_are_rejected_with_their_reason_and_the_alias_stays(env, champion):
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from tests.e2e.test_deployment_e2e import graph_signature

    good = _good_onnx()
    wrong_type = ModelSignature(inputs=Schema([
        TensorSpec(np.dtype("float64") if s.name == "x01" else s.type, (-1, 1), s.name)
        for s in graph_signature(good).inputs.inputs]))  # fmt: skip
    cases = {
        "no-signature": (dict(signature=None), "bad_model", "declares no signature"),
        "signature-not-the-graph": (dict(signature=wrong_type), "schema_mismatch", "declared float64"),
        "random-bytes": (
            dict(replace_onnx=np.random.default_rng(2).bytes(4096)),
            "bad_model",
            "does not load",
        ),
        "empty-file": (dict(replace_onnx=b""), "bad_model", "does not load"),
        "inputs-the-route-lacks": (dict(), "schema_mismatch", "is not in the route's data"),
    }
    versions = {}
    for case, (options, _, _) in cases.items():
        onnx_bytes = _other_inputs_model() if case == "inputs-the-route-lacks" else good
        versions[case] = register_onnx(env.mlflow.tracking_uri, env.name, onnx_bytes, **options)
    for case, (_, reason, text) in cases.items():
        tags = _decided(env, env.name, versions[case])
        assert (tags["scorehook.decision"], tags.get("scorehook.reject_reason")) == ("reject", reason), (case, tags)
        assert text in tags["scorehook.reasons"], (case, tags["scorehook.reasons"])
    assert _champion(env, env.name) == champion


def test_a_candidate_needing_a_subset_of_the_routes_columns_is_evaluated(env, champion):
    version = register_onnx(env.mlflow.tracking_uri, env.name, _subset_onnx())
    tags = _decided(env, env.name, version)
    assert "scorehook.reject_reason" not in tags, tags  # validation passed: the metrics decided
    assert "route" not in tags["scorehook.reasons"] and "auc" in tags["scorehook.reasons"]


def test_mlflow_test_payload_is_ignored_and_the_real_v1_is_decided(env):
    hook = next(w for w in env.client.list_webhooks() if w.name == "scorehook")
    result = env.client.test_webhook(hook.webhook_id)
    assert result.success and result.response_status == 202, result
    ignored = env.wait_for(lambda: [line for line in log_lines(env)
                                    if line.get("message") == "registration ignored: the registry has no such version"
                                    and line.get("model") == "example_model"], what="test payload ignored")  # fmt: skip
    assert ignored[0]["model_version"] == "1" and ignored[0]["reason"] == "model_not_found"
    version = register_onnx(env.mlflow.tracking_uri, "example_model", _noise_model())
    assert version == "1"
    tags = _decided(env, "example_model", "1")
    assert tags["scorehook.decision"] == "promote" and _champion(env, "example_model") == "1"


def test_a_deleted_and_recreated_model_gets_its_new_v1_decided(env):
    name = f"{env.name}-again"
    register_onnx(env.mlflow.tracking_uri, name, _noise_model())
    assert _decided(env, name, "1")["scorehook.decision"] == "promote"
    env.client.delete_registered_model(name)
    assert register_onnx(env.mlflow.tracking_uri, name, _other_inputs_model()) == "1"
    tags = _decided(env, name, "1")  # the new v1's own tags: it was decided, not taken for the old one
    assert tags["scorehook.decision"] == "reject" and tags["scorehook.reject_reason"] == "schema_mismatch"


def test_a_version_with_a_60000_character_tag_is_decided(env, champion):
    version = register_onnx(
        env.mlflow.tracking_uri, env.name, _good_onnx(seed=9), tags={"notes": "x" * 60_000}
    )
    tags = _decided(env, env.name, version)
    assert tags["scorehook.decision"] in ("promote", "reject") and len(tags["notes"]) == 60_000
    queued = [line for line in _deliveries(env, version)]
    assert [line["outcome"] for line in queued] == ["queued"]
    env.wait_for(lambda: any(line["outcome"] == "ignored" for line in log_lines(env)  # our decision's tags
                             if line.get("message") == "webhook delivery" and line.get("model_version") == version),
                 what="model_version_tag.set deliveries logged as ignored")  # fmt: skip


def test_a_queue_down_during_a_delivery_answers_5xx_and_mlflows_retry_gets_it_decided(env, relay, champion):
    relay.stop()
    try:
        version = register_onnx(env.mlflow.tracking_uri, env.name, _good_onnx(seed=10))

        def refused() -> list[dict]:
            return [line for line in log_lines(env) if line.get("message") == "webhook delivery"
                    and line.get("model_version") == version and line.get("outcome") == "not_queued"]  # fmt: skip

        first = env.wait_for(refused, timeout=90, what="a delivery answered 503 while the queue is down")
    finally:
        relay.start()
    tags = _decided(env, env.name, version, timeout=120)
    assert tags["scorehook.decision"] in ("promote", "reject")
    lines = _deliveries(env, version)
    assert lines[-1]["outcome"] == "queued" and lines[-1]["delivery_id"] == first[0]["delivery_id"]
    assert first[0]["reason"] == "storage_unavailable"
    time.sleep(1)
