"""The MLflow model registry adapter (tracking/registry server over REST; mlflow imported lazily)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.errors import ModelNotFoundError, RegistryUnavailableError
from shared.models import parse_model_reference
from shared.ports import ModelVersion

__all__ = ["MlflowRegistry", "parse_model_reference"]


class MlflowRegistry:
    """:class:`shared.ports.ModelRegistry` on ``MlflowClient``.

    Example:
        >>> MlflowRegistry("http://127.0.0.1:5000").resolve("models:/scorehook-sample@champion")  # doctest: +SKIP
        ModelVersion(name='scorehook-sample', version='1', ...)
    """

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    def _call(self, what: str, reference: str, fn: Any, *args: Any) -> Any:
        from mlflow.exceptions import MlflowException, RestException

        try:
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
