"""The Azure SDK clients skip requests' per-request environment lookups only when nothing there would apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters._azure import transport_options
from shared.adapters.blob import AzureBlobStore
from shared.adapters.ledger import TableLedger
from shared.adapters.queue import StorageQueue
from shared.settings import Settings

AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;QueueEndpoint=http://127.0.0.1:1/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:1/devstoreaccount1;"
)


@pytest.mark.parametrize("name", ["HTTP_PROXY", "https_proxy", "ALL_PROXY", "no_proxy", "NETRC"])
def test_a_proxy_setting_keeps_the_environment_trusted(name: str, tmp_path: Path) -> None:
    assert transport_options({"PATH": "/bin", name: "x"}, home=tmp_path) == {}


@pytest.mark.parametrize("name", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_a_ca_bundle_is_passed_as_the_transport_s_verify(name: str, tmp_path: Path) -> None:
    assert transport_options({"PATH": "/bin", name: "/etc/ssl/bundle.pem"}, home=tmp_path) == {
        "use_env_settings": False, "connection_verify": "/etc/ssl/bundle.pem"
    }
    both = {"REQUESTS_CA_BUNDLE": "/a.pem", "CURL_CA_BUNDLE": "/b.pem"}  # requests' own precedence
    assert transport_options(both, home=tmp_path)["connection_verify"] == "/a.pem"


@pytest.mark.parametrize("netrc", [".netrc", "_netrc"])
def test_a_netrc_file_keeps_the_environment_trusted(netrc: str, tmp_path: Path) -> None:
    (tmp_path / netrc).write_text("machine example.com login a password b\n")
    assert transport_options({"PATH": "/bin"}, home=tmp_path) == {}


def test_a_plain_environment_turns_the_lookups_off(tmp_path: Path) -> None:
    assert transport_options({"PATH": "/bin", "HOME": str(tmp_path)}, home=tmp_path) == {
        "use_env_settings": False
    }


def _transports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[object]:
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = Settings.from_env({"DataStorage": AZURITE})
    blob = AzureBlobStore.from_settings(settings)._service._pipeline._transport
    ledger = TableLedger.from_settings(settings, create=False)._table._client._client._pipeline._transport
    queue = StorageQueue.from_settings(settings, "q")._client._pipeline._transport
    unwrapped = []
    for transport in (blob, ledger, queue):
        while not hasattr(transport, "_use_env_settings"):  # a child client's TransportWrapper
            transport = transport._transport
        unwrapped.append(transport)
    return unwrapped


def test_the_storage_clients_use_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "ALL_PROXY",
                 "all_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    assert [t._use_env_settings for t in _transports(monkeypatch, tmp_path)] == [False, False, False]
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/bundle.pem")
    transports = _transports(monkeypatch, tmp_path)
    assert [(t._use_env_settings, t.connection_config.verify) for t in transports] == [
        (False, "/etc/ssl/bundle.pem")
    ] * 3
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert [t._use_env_settings for t in _transports(monkeypatch, tmp_path)] == [True, True, True]
