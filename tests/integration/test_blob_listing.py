"""Container listings read from the raw listing XML (``shared.adapters.listing``: devhost's blob watcher,
``AzureBlobStore.list_blobs`` and so the drift compactor): on Azurite they must see exactly what the SDK's
``list_blobs`` sees, names of every kind, prefixes, metadata, across pages."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings

from devhost.eventgrid import listed_blobs as watcher_listing
from shared.adapters import AzureBlobStore
from shared.adapters.listing import listed_blobs

NAMES = ["a.csv", "dir/sub/ü ñ.csv", "100%.csv", "x+y&z=1.csv", "quote'\"<tag>.csv", "日本語/データ.parquet",
         "trailing.", "spaces  inside .csv", "semi;colon#hash?.csv", "dir/sub/b.csv", "dir/c.csv"]  # fmt: skip


@pytest.fixture(scope="module")
def container(azurite: Any) -> Any:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = service.create_container(f"listing{uuid.uuid4().hex[:8]}")
    for i, name in enumerate(NAMES):
        metadata = {"source": f"s{i}", "rows": str(i * 10)} if i % 2 else None
        client.upload_blob(name, b"x" * (i + 1), content_settings=ContentSettings(content_type=f"text/t{i}"),
                           metadata=metadata)  # fmt: skip
    client.upload_blob("untyped.bin", b"y")
    yield client
    client.delete_container()


def _sdk(client: Any, prefix: str | None = None) -> list[tuple[str, str, int, str, dict[str, str]]]:
    return [(b.name, b.etag, b.size, b.content_settings.content_type or "", dict(b.metadata or {}))
            for b in client.list_blobs(name_starts_with=prefix, include=["metadata"])]  # fmt: skip


def _raw(client: Any, prefix: str | None = None, **kw: Any) -> list[tuple[str, str, int, str, dict[str, str]]]:
    return [(b.name, b.etag, b.size, b.content_type, b.metadata)
            for b in listed_blobs(client, prefix, metadata=True, **kw)]  # fmt: skip


def test_the_raw_listing_sees_what_the_sdk_sees(container: Any) -> None:
    listed = _raw(container)
    assert listed == _sdk(container)
    assert sorted(b[0] for b in listed) == sorted([*NAMES, "untyped.bin"])
    assert any(b[4] for b in listed)  # some metadata was there to compare


@pytest.mark.parametrize("prefix", ["dir/", "dir/sub/", "日本語/", "x+y", "none/"])
def test_a_prefix_lists_what_the_sdk_lists(container: Any, prefix: str) -> None:
    assert _raw(container, prefix) == _sdk(container, prefix)


def test_the_raw_listing_follows_every_page(container: Any) -> None:
    assert _raw(container, per_page=2) == _sdk(container)
    assert [b.name for b in listed_blobs(container, "dir/", per_page=1)] == [b[0] for b in _sdk(container, "dir/")]


def test_the_watcher_lists_without_metadata(container: Any) -> None:
    listed = list(watcher_listing(container))
    assert [(b.name, b.etag, b.size, b.content_type) for b in listed] == [b[:4] for b in _sdk(container)]
    assert not any(b.metadata for b in listed)


def test_the_blob_store_lists_through_it(azurite: Any, container: Any) -> None:
    store = AzureBlobStore(BlobServiceClient.from_connection_string(azurite.connection_string))
    infos = list(store.list_blobs(container.container_name, "dir/"))
    sdk = _sdk(container, "dir/")
    assert [(i.name, i.etag, i.size, i.content_type or "", dict(i.metadata)) for i in infos] == [
        (name, f'"{etag.strip(chr(34))}"', size, ctype, meta) for name, etag, size, ctype, meta in sdk
    ]
    assert list(store.list_blobs(f"missing{uuid.uuid4().hex[:8]}")) == []


def test_a_missing_container_raises_not_found(azurite: Any) -> None:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    with pytest.raises(ResourceNotFoundError):
        list(listed_blobs(service.get_container_client(f"missing{uuid.uuid4().hex[:8]}")))
