"""ModelProvider when the registry is down: the last resolved version keeps scoring, logged as stale."""

from __future__ import annotations

import pytest

from shared.errors import ModelNotFoundError, RegistryUnavailableError, StorageUnavailableError
from shared.logs import capture_logs
from shared.models import ModelCache, ModelProvider
from shared.testing import FakeBlobStore, FakeRegistry

DOWN = RegistryUnavailableError("registry at http://mlflow unavailable: connection refused")


@pytest.fixture
def setup(tiny_onnx):
    now = [0.0]
    registry = FakeRegistry()
    registry.register("m", tiny_onnx, alias="champion")
    provider = ModelProvider(registry, FakeBlobStore(), ModelCache(), ttl_seconds=30, clock=lambda: now[0])
    return provider, registry, now


def test_an_expired_alias_keeps_its_last_version_while_the_registry_is_down(setup):
    provider, registry, now = setup
    assert provider.get("models:/m@champion")[0].version == "1"
    registry.unavailable = DOWN
    now[0] = 45
    with capture_logs() as logs:
        version, model = provider.get("models:/m@champion")
    assert version.version == "1" and model is not None
    stale = [r for r in logs if r["message"] == "alias resolved from a stale cache"]
    assert len(stale) == 1 and stale[0]["level"] == "warning"
    assert (stale[0]["model"], stale[0]["alias"], stale[0]["model_version"]) == ("m", "champion", "1")
    assert stale[0]["age_seconds"] == 45 and "connection refused" in stale[0]["error"]
    assert provider.cache.loads == 1


def test_the_registry_is_asked_again_once_it_is_back(setup, tiny_onnx):
    provider, registry, now = setup
    provider.resolve("models:/m@champion")
    registry.set_alias("m", "champion", registry.register("m", tiny_onnx).version)
    registry.unavailable = DOWN
    now[0] = 31
    assert provider.resolve("models:/m@champion").version == "1"
    registry.unavailable = None
    now[0] = 31 + provider.stale_retry_seconds
    assert provider.resolve("models:/m@champion").version == "2"


def test_after_a_failure_the_registry_is_not_asked_on_every_event(setup):
    provider, registry, now = setup
    provider.resolve("models:/m@champion")
    registry.unavailable = DOWN
    now[0] = 40
    before = registry.resolves
    for _ in range(10):
        assert provider.resolve("models:/m@champion").version == "1"
    assert registry.resolves == before + 1  # one try, then the stale version until stale_retry_seconds pass
    now[0] = 40 + provider.stale_retry_seconds
    provider.resolve("models:/m@champion")
    assert registry.resolves == before + 2


def test_without_an_earlier_resolution_the_error_propagates(setup):
    provider, registry, _ = setup
    registry.fail_next = DOWN
    with pytest.raises(RegistryUnavailableError):
        provider.resolve("models:/m@champion")
    assert provider.resolve("models:/m@champion").version == "1"  # fail_next fails one call only


def test_a_removed_alias_never_falls_back_and_is_forgotten(setup):
    provider, registry, now = setup
    provider.resolve("models:/m@champion")
    registry.remove_alias("m", "champion")
    now[0] = 31
    with pytest.raises(ModelNotFoundError):
        provider.resolve("models:/m@champion")
    registry.unavailable = DOWN  # the removed version must not come back as a stale fallback either
    with pytest.raises(RegistryUnavailableError):
        provider.resolve("models:/m@champion")


def test_an_invalidated_alias_falls_back_when_the_registry_is_down(setup):
    provider, registry, _ = setup
    provider.resolve("models:/m@champion")
    assert provider.invalidate("m") == 1
    registry.unavailable = DOWN
    with capture_logs() as logs:
        assert provider.resolve("models:/m@champion").version == "1"
    assert [r["message"] for r in logs] == ["alias resolved from a stale cache"]
    assert provider.invalidate("m") == 0  # nothing fresh to forget: the stale fallback is not counted


def test_a_provider_that_never_caches_never_serves_a_stale_version(tiny_onnx):
    registry = FakeRegistry()
    registry.register("m", tiny_onnx, alias="champion")
    provider = ModelProvider(registry, FakeBlobStore(), ModelCache(), ttl_seconds=0)
    provider.resolve("models:/m@champion")
    registry.fail_next = DOWN
    with pytest.raises(RegistryUnavailableError):
        provider.resolve("models:/m@champion")


def test_a_blob_model_keeps_its_last_etag_while_storage_is_down(tiny_onnx):
    now = [0.0]
    blobs = FakeBlobStore()
    blobs.write_bytes("models", "m.onnx", tiny_onnx.read_bytes())
    provider = ModelProvider(FakeRegistry(), blobs, ModelCache(), ttl_seconds=30, clock=lambda: now[0])
    first = provider.resolve("blob://models/m.onnx")
    now[0] = 31
    blobs.fail_next = StorageUnavailableError("storage answered 503")
    with capture_logs() as logs:
        assert provider.resolve("blob://models/m.onnx") == first
    assert logs[0]["model"] == "blob://models/m.onnx" and logs[0]["alias"] is None


def test_while_one_caller_re_resolves_the_others_keep_the_last_version(tiny_onnx):
    import threading

    release, entered = threading.Event(), threading.Event()

    class SlowRegistry(FakeRegistry):
        slow = False

        def before_resolve(self, reference):
            if self.slow:
                entered.set()
                release.wait(10)

    now = [0.0]
    registry = SlowRegistry()
    registry.register("m", tiny_onnx, alias="champion")
    provider = ModelProvider(registry, FakeBlobStore(), ModelCache(), ttl_seconds=30, clock=lambda: now[0])
    provider.resolve("models:/m@champion")
    registry.set_alias("m", "champion", registry.register("m", tiny_onnx).version)
    registry.slow, now[0] = True, 31
    refreshed = []
    refresher = threading.Thread(target=lambda: refreshed.append(provider.resolve("models:/m@champion")))
    refresher.start()
    assert entered.wait(10)
    assert provider.resolve("models:/m@champion").version == "1"  # does not wait for the slow registry
    assert registry.resolves == 2
    release.set()
    refresher.join(10)
    assert refreshed[0].version == "2" and provider.resolve("models:/m@champion").version == "2"
