"""devhost's local Event Hubs over real Azurite: senders never share a sequence number, one partition key
keeps one partition, checkpoints are kept per consumer group as the blob checkpoint store keeps them."""

from __future__ import annotations

import threading

from devhost.eventhubs import CHECKPOINTS, NAMESPACE, LocalEventHubs


def test_concurrent_senders_get_distinct_sequence_numbers_in_order(azurite, unique):
    hubs = LocalEventHubs.from_connection_string(azurite.connection_string, partitions=2)
    hub = f"concurrent-{unique}"

    def send(who: str) -> None:
        LocalEventHubs.from_connection_string(azurite.connection_string, 2).send(
            hub, [f"{who}-{i}" for i in range(10)], partition="0"
        )

    threads = [threading.Thread(target=send, args=(w,)) for w in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = hubs.read(hub, "0")
    assert [e.sequence_number for e in events] == list(range(20))
    assert sorted(e.body.decode() for e in events) == sorted(f"{w}-{i}" for w in "ab" for i in range(10))
    for who in "ab":  # each sender's events keep their order
        mine = [e.body.decode() for e in events if e.body.decode().startswith(who)]
        assert mine == [f"{who}-{i}" for i in range(10)]


def test_a_partition_key_keeps_one_partition_and_checkpoints_are_per_consumer_group(azurite, unique):
    hubs = LocalEventHubs.from_connection_string(azurite.connection_string, partitions=4)
    hub = f"keys-{unique}"
    placed = hubs.send(hub, ["1", "2", "3"], partition_key="customer-7")
    assert len({p for p, _ in placed}) == 1 and [s for _, s in placed] == [0, 1, 2]
    partition = placed[0][0]
    events = hubs.read(hub, partition, after=0, limit=1)
    assert [e.body for e in events] == [b"2"] and events[0].partition_key == "customer-7"

    assert hubs.checkpoint(hub, "$Default", partition) == -1
    hubs.set_checkpoint(hub, "$Default", partition, events[0])
    assert hubs.checkpoint(hub, "$Default", partition) == 1 and hubs.checkpoint(hub, "audit", partition) == -1
    blob = hubs.service.get_blob_client(CHECKPOINTS, f"{NAMESPACE}/{hub}/$default/checkpoint/{partition}")
    assert blob.get_blob_properties().metadata == {"sequencenumber": "1", "offset": "1"}


def test_the_app_side_sink_keeps_each_partition_key_on_one_partition_in_order(azurite, unique):
    from shared.adapters.eventhub_local import LocalEventHubSink
    from shared.ports import OutEvent

    hubs = LocalEventHubs.from_connection_string(azurite.connection_string, partitions=4)
    hub = f"sink-{unique}"
    keys = ["file-a", "file-a", "file-b", "file-a", "file-b"]
    LocalEventHubSink(hubs, hub).send([OutEvent(f"{key}#{i}", key) for i, key in enumerate(keys)])
    events = hubs.read_all(hub)
    for key in ("file-a", "file-b"):
        mine = [e for e in events if e.partition_key == key]
        assert len({e.partition for e in mine}) == 1
        assert [e.body.decode() for e in mine] == [f"{key}#{i}" for i, k in enumerate(keys) if k == key]
