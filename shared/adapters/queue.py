"""Storage queue adapter on azure-storage-queue: the messages a queue-triggered function reads.

Messages are base64-encoded, as the Functions host's queue trigger expects. Every send is bounded (a few
seconds, one retry), so an HTTP entry point that queues work answers 5xx quickly when the queue is down.
"""

from __future__ import annotations

from typing import Any

from shared.adapters._azure import default_credential, storage_errors, transport_options
from shared.errors import ConfigurationError
from shared.settings import Settings

__all__ = ["StorageQueue"]

_BOUNDS: dict[str, Any] = {"retry_total": 1, "retry_backoff_factor": 0.5, "connection_timeout": 3, "read_timeout": 5}


class StorageQueue:
    """:class:`shared.ports.MessageQueue` on a ``QueueClient``.

    Example:
        >>> queue = StorageQueue.from_settings(settings, "model-registrations")   # doctest: +SKIP
        >>> queue.send('{"kind": "registration", "name": "churn", "version": "3"}')   # doctest: +SKIP
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._created = False

    @classmethod
    def from_settings(cls, settings: Settings, queue: str) -> StorageQueue:
        """Connect with ``DataStorage`` (connection string) or ``DataStorage__queueServiceUri`` (identity)."""
        from azure.storage.queue import QueueClient, TextBase64EncodePolicy

        policy = TextBase64EncodePolicy()
        if settings.data_connection_string:
            client = QueueClient.from_connection_string(
                settings.data_connection_string, queue, message_encode_policy=policy, **_BOUNDS, **transport_options()
            )
        elif settings.data_queue_service_uri:
            client = QueueClient(settings.data_queue_service_uri, queue, credential=default_credential(),
                                 message_encode_policy=policy, **_BOUNDS, **transport_options())  # fmt: skip
        else:
            raise ConfigurationError("set DataStorage or DataStorage__queueServiceUri", setting="DataStorage")
        return cls(client)

    def send(self, text: str) -> None:
        """Send one message; creates the queue once if it does not exist yet."""
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        with storage_errors(f"queue a message on {self._client.queue_name}"):
            try:
                self._client.send_message(text)
            except ResourceNotFoundError:
                if self._created:
                    raise
                try:
                    self._client.create_queue()
                except ResourceExistsError:
                    pass
                self._created = True
                self._client.send_message(text)
