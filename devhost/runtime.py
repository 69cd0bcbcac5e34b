"""devhost put together: app settings → function index → HTTP server, local Event Grid, timers, queues.

Example:
    >>> with DevHost(env=local_settings["Values"], port=0) as dev:     # doctest: +SKIP
    ...     print(dev.base_url)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from devhost.hostconfig import HostConfig
from devhost.services import PROJECT_ROOT, Azurite, free_port
from shared.adapters._azure import transport_options

__all__ = ["DEFAULT_SUBSCRIPTIONS", "TOPIC_NAME", "DevHost", "local_settings"]

log = logging.getLogger("devhost")
DEFAULT_SUBSCRIPTIONS = PROJECT_ROOT / "devhost" / "subscriptions.json"
TOPIC_NAME = "scorehook-events"
HOST_JSON = PROJECT_ROOT / "host.json"
_FROM_HOST_JSON = object()


def local_settings(
    azurite: Azurite, mlflow_uri: str, port: int, *, log_file: str | None = None
) -> dict[str, Any]:
    """The content of ``local.settings.json`` for services on loopback and a devhost on ``port``."""
    values = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "AzureWebJobsStorage": azurite.connection_string,
        "DataStorage": azurite.connection_string,
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "SCOREHOOK_ALLOWED_STORAGE_ACCOUNTS": "devstoreaccount1",
        "SCOREHOOK_EVENTS_TOPIC_ENDPOINT": f"http://127.0.0.1:{port}/topics/{TOPIC_NAME}/api/events",
        "SCOREHOOK_EVENTS_TOPIC_KEY": secrets.token_urlsafe(24),
        "SCOREHOOK_MLFLOW_WEBHOOK_SECRET": secrets.token_urlsafe(24),
        "SCOREHOOK_EVALUATION_DATA": "blob://evaluation/holdout.csv",
        "SCOREHOOK_DRIFT_SCHEDULE": "*/10 * * * * *",
        "SCOREHOOK_RETRAIN_LAUNCHER": "local",
        "SCOREHOOK_EVENTHUBS_LOCAL": "true",
    }
    if log_file:
        values["SCOREHOOK_LOG_FILE"] = log_file
    return {
        "IsEncrypted": False,
        "Values": values,
        "Host": {
            "LocalHttpPort": port,
            "FunctionKey": secrets.token_urlsafe(24),
            "MasterKey": secrets.token_urlsafe(24),
        },
    }


def register_mlflow_webhook(
    tracking_uri: str, devhost_url: str, secret: str, name: str = "scorehook-devhost"
) -> str:
    """Point the MLflow registry's webhook at devhost's ``/api/mlflow-webhook`` (replacing an older one)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    for webhook in client.list_webhooks():
        if webhook.name == name:
            client.delete_webhook(webhook.webhook_id)
    webhook = client.create_webhook(
        name=name, url=f"{devhost_url}/api/mlflow-webhook", secret=secret,
        events=["model_version.created", "model_version_tag.set"],
    )  # fmt: skip
    return str(webhook.webhook_id)


def _fans_out(env: dict[str, str]) -> bool:
    from shared.routes import load_routes
    from shared.settings import Settings

    return any(route.fanout_bytes for route in load_routes(Settings.from_env(env)))


class _OutputSink:
    """Writes values of queue and blob output bindings to Azurite, as the host's extensions do."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def _connection(self, binding: dict[str, Any]) -> str:
        return (
            self.env.get(binding.get("connection") or "AzureWebJobsStorage")
            or self.env["AzureWebJobsStorage"]
        )

    def __call__(self, binding: dict[str, Any], value: Any) -> None:
        values = value if isinstance(value, list) else [value]
        if binding["type"] == "queue":
            from azure.storage.queue import BinaryBase64EncodePolicy, QueueClient

            client = QueueClient.from_connection_string(
                self._connection(binding),
                binding["queueName"],
                message_encode_policy=BinaryBase64EncodePolicy(),
                **transport_options(),
            )
            with contextlib.suppress(Exception):
                client.create_queue()
            for item in values:
                client.send_message(item.encode() if isinstance(item, str) else bytes(item))
        elif binding["type"] == "blob":
            from azure.storage.blob import BlobServiceClient

            container, _, name = binding["path"].partition("/")
            service = BlobServiceClient.from_connection_string(self._connection(binding), **transport_options())
            service.get_blob_client(container, name).upload_blob(value, overwrite=True)
        elif binding["type"] == "eventHub":
            from devhost.eventhubs import send_output

            send_output(self.env, binding, values)
        else:
            log.warning("output binding type %s is not supported by devhost; value dropped", binding["type"])


class DevHost:
    """The local Functions host: serves ``app_spec`` on loopback with its triggers wired to Azurite.

    From ``host_json``: ``functionTimeout`` bounds every invocation (``function_timeout`` seconds, or the
    app setting ``DEVHOST_FUNCTION_TIMEOUT``, overrides it; ``None`` means no limit) and
    ``extensions.http.maxConcurrentRequests`` / ``maxOutstandingRequests`` bound concurrent invocations
    over HTTP (also the local Event Grid's delivery workers). The effective timeout is put in the app's
    environment as ``AzureFunctionsJobHost__functionTimeout`` (the app setting that overrides host.json in
    Azure). The local Event Grid keeps its state in the Azurite table ``state_table`` (else the app
    setting ``DEVHOST_EVENTGRID_TABLE``, else one derived from storage, port and subscriptions file:
    :func:`devhost.eventgrid.state_table_name`), so a restarted devhost on the same port resumes it.
    ``retry_delays`` overrides the subscriptions file's ``delivery.retryDelaysSeconds``.
    ``services_health`` (``() -> {name: state}``, e.g. :meth:`devhost.stack.Supervisor.states`) is added
    to ``/api/health``.
    """

    def __init__(
        self,
        env: dict[str, str],
        *,
        app_spec: str = "function_app:app",
        port: int = 0,
        function_key: str = "",
        master_key: str = "",
        subscriptions: str | Path | None = DEFAULT_SUBSCRIPTIONS,
        retry_delays: list[float] | None = None,
        poll_interval: float | None = None,
        host_json: str | Path = HOST_JSON,
        function_timeout: float | object | None = _FROM_HOST_JSON,
        state_table: str | None = None,
        services_health: Any = None,
    ) -> None:
        self.env = dict(env)
        self.config = HostConfig.load(host_json, {**os.environ, **self.env})
        if function_timeout is not _FROM_HOST_JSON:
            self.config = dataclasses.replace(self.config, function_timeout=function_timeout)
        self.env.update(self.config.app_settings())
        from shared.startup import check_configuration

        check_configuration({**os.environ, **self.env})  # one error listing every bad setting: no start
        os.environ.update(self.env)  # app settings reach the worker as environment variables
        from devhost.host import FunctionHost
        from devhost.server import DevServer
        from devhost.triggers import TimerScheduler

        self.host = FunctionHost.load(
            app_spec, output_sink=_OutputSink(self.env), function_timeout=self.config.function_timeout
        )
        self.timers = TimerScheduler(self.host)
        self.timers.check()
        self.server = DevServer(
            self.host,
            port=port or free_port(),
            function_key=function_key,
            master_key=master_key,
            blob_reader=self._read_blob if self._storage() else None,
            record_rejection=self._rejection_writer(),
            max_concurrent_requests=self.config.max_concurrent_requests,
            max_outstanding_requests=self.config.max_outstanding_requests,
            services_health=services_health,
        )
        self.base_url = self.server.base_url
        self.eventgrid = None
        if subscriptions and self._storage():
            self.eventgrid = self._build_eventgrid(Path(subscriptions), retry_delays, poll_interval, state_table)
            self.server.eventgrid = self.eventgrid
        from devhost.triggers import QueuePoller
        from devhost.workers import PartWorkers, worker_count
        from shared.routes import PARTS_QUEUE

        # the parts queue gets worker processes of its own when a route fans large files out
        parts = worker_count(self.env) if self._storage() and _fans_out({**os.environ, **self.env}) else 0
        self.part_workers = PartWorkers(self.env, parts, app_spec=app_spec) if parts else None
        self.queues = QueuePoller(self.host, self.env, exclude={PARTS_QUEUE} if parts else set()) if self._storage() else None
        from devhost.eventhubs import EventHubRunner

        self.eventhubs = EventHubRunner(self.host, self.env) if self._storage() else None

    def _rejection_writer(self) -> Any:
        """(raw, error, function) -> where the failure record went: ``shared.rejections`` on the app's
        storage and failed container, built once (``None`` without storage)."""
        if not self._storage():
            return None
        from shared.adapters import AzureBlobStore
        from shared.rejections import write_rejected_event
        from shared.settings import Settings

        settings = Settings.from_env(self.env)
        blobs = AzureBlobStore.from_settings(settings)
        container = settings.failed_container

        def record(raw: Any, error: Any, function: str) -> str | None:
            where = write_rejected_event(blobs, container, raw, error, source=function)
            if where is None:  # the failed container may not exist yet on a fresh Azurite
                with contextlib.suppress(Exception):
                    self._blob_service().create_container(container)
                where = write_rejected_event(blobs, container, raw, error, source=function)
            return where

        return record

    def _storage(self) -> str:
        return self.env.get("DataStorage") or self.env.get("AzureWebJobsStorage") or ""

    def _blob_service(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self._storage(), **transport_options())

    def _read_blob(self, container: str, name: str) -> tuple[bytes, str, dict[str, Any]]:
        client = self._blob_service().get_blob_client(container, name)
        downloader = client.download_blob()
        props = downloader.properties
        properties = {
            "ContentLength": props.size,
            "ETag": props.etag,
            "ContentType": props.content_settings.content_type,
            "Metadata": dict(props.metadata or {}),
        }
        return downloader.readall(), client.url, properties

    def _build_eventgrid(
        self, path: Path, retry_delays: list[float] | None, poll_interval: float | None, state_table: str | None
    ) -> Any:
        from devhost.eventgrid import EventGridStore, LocalEventGrid, load_subscriptions, state_table_name

        subscriptions, topics, delivery = load_subscriptions(path)
        topic_keys = {
            name: {"key": self.env.get(t.get("keySetting", ""), t.get("key"))} for name, t in topics.items()
        }
        return LocalEventGrid(
            subscriptions,
            self.base_url,
            self._blob_service(),
            topics=topic_keys,
            retry_delays=retry_delays or delivery.get("retryDelaysSeconds"),
            poll_interval=poll_interval or float(delivery.get("blobPollIntervalSeconds", 0.1)),
            workers=self.config.max_concurrent_requests or 16,
            store=EventGridStore.from_connection_string(
                self.env.get("AzureWebJobsStorage") or self._storage(),
                state_table or self.env.get("DEVHOST_EVENTGRID_TABLE")
                or state_table_name(self._storage(), self.server.port, path),
                self._blob_service(),
            ),
        )

    def start(self) -> DevHost:
        if self.eventgrid:  # before the host answers: a blob uploaded once it does is announced
            self.eventgrid.restore()
        self.server.start()
        if self.eventgrid:
            self.eventgrid.start()
        self.timers.start()
        if self.queues:
            self.queues.start()
        if self.part_workers:
            self.part_workers.start()
        if self.eventhubs:
            self.eventhubs.start()
        log.info(
            "devhost listening on %s with functions %s", self.base_url, ", ".join(sorted(self.host.functions))
        )
        return self

    def stop(self) -> None:
        self.timers.stop()
        if self.queues:
            self.queues.stop()
        if self.part_workers:
            self.part_workers.stop()
        if self.eventhubs:
            self.eventhubs.stop()
        if self.eventgrid:
            self.eventgrid.stop()
        self.server.stop()

    def __enter__(self) -> DevHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @classmethod
    def from_settings_file(cls, path: str | Path, **kwargs: Any) -> DevHost:
        """Build from a ``local.settings.json`` (Values → environment, Host → port and keys)."""
        from shared.errors import ConfigurationError

        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:  # one line from `python -m devhost`, not a traceback
            raise ConfigurationError(f"settings file {path} cannot be read: {exc}", setting=str(path)) from None
        host = data.get("Host", {})
        kwargs.setdefault("port", int(host.get("LocalHttpPort", 0)))
        kwargs.setdefault("function_key", host.get("FunctionKey", ""))
        kwargs.setdefault("master_key", host.get("MasterKey", ""))
        return cls(data.get("Values", {}), **kwargs)
