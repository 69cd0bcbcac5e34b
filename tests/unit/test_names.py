"""shared.names: what an event names is checked once, before any I/O."""

from __future__ import annotations

import pytest

from shared.errors import BadNameError
from shared.events import parse_blob_created
from shared.names import ascii_metadata, blob_endpoints, block_ids, check_blob_event, check_blob_name
from shared.settings import Settings

AZURITE = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"


def _event(url: str, subject_blob: str | None = None, container: str = "incoming") -> dict:
    return {
        "id": "e-1", "eventType": "Microsoft.Storage.BlobCreated", "eventTime": "2026-12-01T10:00:00Z",
        "subject": f"/blobServices/default/containers/{container}/blobs/{subject_blob or url.split(f'/{container}/', 1)[-1]}",
        "data": {"eTag": "0x1", "url": url, "contentLength": 10, "api": "PutBlob"},
    }  # fmt: skip


@pytest.mark.parametrize(
    "name",
    ["../x.csv", "a/../../etc/passwd", "./a.csv", "a/./b.csv", "a//b.csv", "a\\b.csv", "a\x00b.csv", "a\nb.csv",
     "a\x7fb.csv", "a\u0085b.csv", "x" * 1025, "/".join(["a"] * 255), "a.csv.", "trailing/"],
)  # fmt: skip
def test_unsafe_blob_names_are_bad_events(name):
    with pytest.raises(BadNameError) as caught:
        check_blob_name("incoming", name)
    assert caught.value.reason == "bad_event"


@pytest.mark.parametrize("name", ["a.csv", "2026/11/batch 1.csv", "déjà vu/ünï.csv", "a..b.csv", "..a.csv", "x" * 1024])
def test_ordinary_names_pass(name):
    check_blob_name("incoming", name)


@pytest.mark.parametrize("container", ["In", "ab", "a--b", "-ab", "a_b", "x" * 64, "$logs"])
def test_invalid_container_names_are_bad_events(container):
    with pytest.raises(BadNameError):
        check_blob_name(container, "a.csv")


def test_percent_encoded_dot_segments_are_caught_after_decoding():
    settings = Settings.from_env({"DataStorage": AZURITE})
    url = "http://127.0.0.1:10000/devstoreaccount1/incoming/..%2F..%2Fhome%2Fsite%2Fwwwroot%2Flocal.settings.json"
    event = parse_blob_created(_event(url, subject_blob="../../home/site/wwwroot/local.settings.json"))
    assert event.blob_name == "../../home/site/wwwroot/local.settings.json"
    with pytest.raises(BadNameError, match=r"'\.\.' segment"):
        check_blob_event(event, settings)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:10001/devstoreaccount1/incoming/a.csv",  # another port
     "http://evil.example/devstoreaccount1/incoming/a.csv",
     "https://devstoreaccount1.blob.core.windows.net.evil.example/incoming/a.csv",
     "http://127.0.0.1:10000/devstoreaccount1/incoming/a.csv?comp=list",
     "http://user:pw@127.0.0.1:10000/devstoreaccount1/incoming/a.csv"],
)  # fmt: skip
def test_urls_off_the_configured_endpoints_are_bad_events(url):
    settings = Settings.from_env({"DataStorage": AZURITE})
    event = parse_blob_created(_event(url, subject_blob="a.csv"))
    with pytest.raises(BadNameError):
        check_blob_event(event, settings)


def test_identity_based_settings_allow_the_accounts_blob_and_dfs_hosts():
    settings = Settings.from_env({"DataStorage__blobServiceUri": "https://acct.blob.core.windows.net",
                                  "SCOREHOOK_ALLOWED_STORAGE_ACCOUNTS": "acct,second"})  # fmt: skip
    hosts = {e.host for e in blob_endpoints(settings)}
    assert hosts == {"acct.blob.core.windows.net", "acct.dfs.core.windows.net",
                     "second.blob.core.windows.net", "second.dfs.core.windows.net"}  # fmt: skip
    check_blob_event(parse_blob_created(_event("https://acct.dfs.core.windows.net/incoming/a.csv")), settings)
    with pytest.raises(BadNameError):
        check_blob_event(parse_blob_created(_event("https://third.blob.core.windows.net/incoming/a.csv")), settings)


def test_metadata_values_become_printable_ascii_and_block_ids_never_repeat():
    assert ascii_metadata({"u": "a\u00e9\nb", "n": 3}) == {"u": "a%C3%A9%0Ab", "n": "3"}
    assert ascii_metadata({"u": "100%"}) == {"u": "100%"}  # ASCII stays as it is
    ids = [next(block_ids()) for _ in range(50)]
    assert len(set(ids)) == 50 and len({len(i) for i in ids}) == 1
