"""The MLflow model registry adapter (tracking/registry server over REST; mlflow imported lazily).

Every call is bounded: the MLflow client reads its HTTP timeout, retry count and backoff from process-wide
environment variables at request time (``MLFLOW_HTTP_REQUEST_TIMEOUT`` 120 s, ``..._MAX_RETRIES`` 7,
``..._BACKOFF_FACTOR`` 2: about four minutes against a stopped server). Changing ``os.environ`` would change
them for every other MLflow user in the process (and for child processes), and is not thread-safe; instead
:func:`bounded_http` overrides those variables for the calling context only (a ``ContextVar``), so code
outside an :class:`MlflowRegistry` call sees MLflow's own settings unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from shared.errors import ConfigurationError, ModelNotFoundError, RegistryUnavailableError
from shared.models import parse_model_reference
from shared.ports import ModelVersion

__all__ = ["MlflowRegistry", "bounded_http", "parse_model_reference"]

# MLflow refuses more retries than this (``_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT``).
_MAX_RETRIES_LIMIT = 10
_BOUNDS: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "scorehook_mlflow_http_bounds", default=None
)
_install_lock = threading.Lock()
_installed = False


def _install_overrides() -> None:
    """Let :data:`_BOUNDS` override MLflow's HTTP variables (once per process; a no-op when unset)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        from mlflow import environment_variables as env

        for variable in (
            env.MLFLOW_HTTP_REQUEST_TIMEOUT,
            env.MLFLOW_HTTP_REQUEST_MAX_RETRIES,
            env.MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
            env.MLFLOW_HTTP_REQUEST_BACKOFF_JITTER,
            env.MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER,
        ):
            variable.get = _scoped_get(variable.name, variable.get)  # type: ignore[method-assign]
        _installed = True


def _scoped_get(name: str, original: Callable[[], Any]) -> Callable[[], Any]:
    def get() -> Any:
        bounds = _BOUNDS.get()
        if bounds is not None and name in bounds:
            return bounds[name]
        return original()

    return get


@contextlib.contextmanager
def bounded_http(timeout_seconds: float, max_retries: int) -> Iterator[None]:
    """MLflow HTTP requests made by this thread inside the block time out after ``timeout_seconds`` (per
    connect/read) and are retried at most ``max_retries`` times with short backoff, ignoring ``Retry-After``.

    Example:
        >>> with bounded_http(2.0, 0):                     # doctest: +SKIP
        ...     MlflowClient(uri).get_model_version("m", "1")  # fails in about 2 s when the server hangs
    """
    _install_overrides()
    token = _BOUNDS.set(
        {
            "MLFLOW_HTTP_REQUEST_TIMEOUT": timeout_seconds,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": max_retries,
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": 1,
            "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": 0.5,
            "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": False,
        }
    )
    try:
        yield
    finally:
        _BOUNDS.reset(token)


class MlflowRegistry:
    """:class:`shared.ports.ModelRegistry` on ``MlflowClient``.

    Example:
        >>> MlflowRegistry("http://127.0.0.1:5000").resolve("models:/scorehook-sample@champion")  # doctest: +SKIP
        ModelVersion(name='scorehook-sample', version='1', ...)
    """

    def __init__(
        self,
        tracking_uri: str,
        timeout_seconds: float = 10.0,
        max_retries: int = 1,
        *,
        allows_pickle: bool = False,
    ) -> None:
        if not timeout_seconds > 0:
            raise ConfigurationError(
                f"the MLflow timeout must be positive, not {timeout_seconds}",
                setting="SCOREHOOK_MLFLOW_TIMEOUT_SECONDS",
            )
        if not 0 <= max_retries <= _MAX_RETRIES_LIMIT:
            raise ConfigurationError(
                f"MLflow retries must be between 0 and {_MAX_RETRIES_LIMIT}, not {max_retries}",
                setting="SCOREHOOK_MLFLOW_MAX_RETRIES",
            )
        self.tracking_uri = tracking_uri
        self.allows_pickle = allows_pickle  # pickle-based flavors of this registry may be loaded
        self.timeout_seconds, self.max_retries = float(timeout_seconds), int(max_retries)
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: Any) -> MlflowRegistry:
        """The registry at ``MLFLOW_TRACKING_URI``, bounded by ``SCOREHOOK_MLFLOW_TIMEOUT_SECONDS`` and
        ``SCOREHOOK_MLFLOW_MAX_RETRIES``.

        Example:
            >>> MlflowRegistry.from_settings(Settings.from_env()).max_retries   # doctest: +SKIP
            1
        """
        return cls(
            settings.require("mlflow_tracking_uri"),
            timeout_seconds=settings.mlflow_timeout_seconds,
            max_retries=settings.mlflow_max_retries,
            allows_pickle=settings.require("mlflow_tracking_uri").rstrip("/")
            in {uri.rstrip("/") for uri in settings.pickle_registries},
        )

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    def _call(self, what: str, reference: str, fn: Any, *args: Any) -> Any:
        from mlflow.exceptions import MlflowException, RestException

        try:
            with bounded_http(self.timeout_seconds, self.max_retries):
                return fn(*args)
        except RestException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                raise ModelNotFoundError(
                    f"{what}: {reference} is not registered ({exc.error_code})", reference=reference
                ) from exc
            raise RegistryUnavailableError(f"{what}: registry error {exc.error_code}: {exc}") from exc
        except MlflowException as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                raise ModelNotFoundError(
                    f"{what}: {reference} is not registered", reference=reference
                ) from exc
            raise RegistryUnavailableError(
                f"{what}: registry at {self.tracking_uri} unavailable: {exc}"
            ) from exc
        except OSError as exc:
            raise RegistryUnavailableError(
                f"{what}: registry at {self.tracking_uri} unreachable: {exc}"
            ) from exc

    def resolve(self, reference: str) -> ModelVersion:
        name, alias, version = parse_model_reference(reference)
        if alias:
            mv = self._call("resolve alias", reference, self.client.get_model_version_by_alias, name, alias)
        else:
            mv = self._call("resolve version", reference, self.client.get_model_version, name, version)
        return ModelVersion(
            name=mv.name,
            version=str(mv.version),
            source=mv.source,
            run_id=mv.run_id,
            tags=dict(mv.tags or {}),
            identity=str(mv.creation_timestamp) if getattr(mv, "creation_timestamp", None) else None,
        )

    def download(self, version: ModelVersion, destination: str) -> str:
        import mlflow.artifacts

        # The version's own artifact location: ``models:/`` URIs would be resolved against the process-wide
        # registry URI, not this registry's.
        source = self._call(
            "locate model",
            version.uri,
            self.client.get_model_version_download_uri,
            version.name,
            version.version,
        )
        return str(
            self._call(
                "download model",
                version.uri,
                lambda: mlflow.artifacts.download_artifacts(
                    artifact_uri=source, dst_path=destination, tracking_uri=self.tracking_uri
                ),
            )
        )

    def read_artifact(self, version: ModelVersion, path: str) -> bytes | None:
        import tempfile
        from pathlib import Path

        import mlflow.artifacts

        if not version.run_id:
            return None
        folder = path.rpartition("/")[0] or None
        listed = self._call("list artifacts", version.uri, self.client.list_artifacts, version.run_id, folder)
        if path not in {entry.path for entry in listed}:
            return None
        with tempfile.TemporaryDirectory(prefix="scorehook-artifact-") as tmp:
            local = self._call(
                "read artifact",
                version.uri,
                lambda: mlflow.artifacts.download_artifacts(
                    run_id=version.run_id, artifact_path=path, dst_path=tmp, tracking_uri=self.tracking_uri
                ),
            )
            return Path(local).read_bytes()

    def alias_version(self, name: str, alias: str) -> str | None:
        try:
            return self.resolve(f"models:/{name}@{alias}").version
        except ModelNotFoundError:
            return None

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._call(
            "set alias",
            f"models:/{name}@{alias}",
            self.client.set_registered_model_alias,
            name,
            alias,
            version,
        )

    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self._call("set tag", f"models:/{name}/{version}", self.client.set_model_version_tag, name, version, key,
                       str(value)[:5000])  # fmt: skip
