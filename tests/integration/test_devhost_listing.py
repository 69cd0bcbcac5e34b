"""devhost's blob watcher lists containers from the raw listing XML (``devhost.eventgrid.listed_blobs``): on
Azurite it must see exactly what the SDK's ``list_blobs`` sees, names of every kind and across pages."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings

from devhost.eventgrid import listed_blobs

NAMES = ["a.csv", "dir/sub/ü ñ.csv", "100%.csv", "x+y&z=1.csv", "quote'\"<tag>.csv", "日本語/データ.parquet",
         "trailing.", "spaces  inside .csv", "semi;colon#hash?.csv"]  # fmt: skip


@pytest.fixture(scope="module")
def container(azurite: Any) -> Any:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = service.create_container(f"listing{uuid.uuid4().hex[:8]}")
    for i, name in enumerate(NAMES):
        client.upload_blob(name, b"x" * (i + 1), content_settings=ContentSettings(content_type=f"text/t{i}"))
    yield client
    client.delete_container()


def _sdk(client: Any) -> list[tuple[str, str, int, str]]:
    return [(b.name, b.etag, b.size, b.content_settings.content_type) for b in client.list_blobs()]


def test_the_raw_listing_sees_what_the_sdk_sees(container: Any) -> None:
    listed = [(b.name, b.etag, b.size, b.content_type) for b in listed_blobs(container)]
    assert listed == _sdk(container)
    assert sorted(b[0] for b in listed) == sorted(NAMES)


def test_the_raw_listing_follows_every_page(container: Any) -> None:
    listed = [b.name for b in listed_blobs(container, per_page=2)]
    assert listed == [b[0] for b in _sdk(container)]


def test_a_missing_container_raises_not_found(azurite: Any) -> None:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    with pytest.raises(ResourceNotFoundError):
        list(listed_blobs(service.get_container_client(f"missing{uuid.uuid4().hex[:8]}")))
