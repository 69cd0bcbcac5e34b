"""Shared helpers for the Azure SDK adapters: credentials and error mapping."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared.errors import ScorehookError, StorageUnavailableError


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Map azure-core errors raised inside the block to our own: 5xx/429/transport → StorageUnavailableError."""
    from azure.core.exceptions import AzureError, HttpResponseError

    try:
        yield
    except ScorehookError:
        raise
    except HttpResponseError as exc:
        status = exc.status_code or 0
        if status >= 500 or status in (408, 429) or status == 0:
            raise StorageUnavailableError(
                f"{what}: storage answered {status}: {exc.reason}", status=status
            ) from exc
        raise
    except AzureError as exc:
        raise StorageUnavailableError(f"{what}: {type(exc).__name__}: {exc}") from exc


_ENVIRONMENT_SETTINGS = frozenset(
    {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC"}
)


def transport_options(environ: Mapping[str, str] | None = None, home: Path | None = None) -> dict[str, Any]:
    """Keyword arguments for an Azure SDK client's HTTP transport: ``use_env_settings=False`` when the
    environment sets nothing ``requests`` would take from it (a proxy, a CA bundle, a netrc file), else none.

    With the environment trusted, ``requests`` reads it again on every request (proxies, netrc): ~0.6 ms of
    CPU a request, about a tenth of devhost's GIL time in a burst. A proxy or CA bundle set is honoured.

    Example:
        >>> transport_options({"PATH": "/bin"}, home=Path("/nonexistent"))
        {'use_env_settings': False}
        >>> transport_options({"https_proxy": "http://proxy:3128"})
        {}
    """
    environ = os.environ if environ is None else environ
    if any(name.upper() in _ENVIRONMENT_SETTINGS for name in environ):
        return {}
    try:
        home = Path.home() if home is None else home
    except RuntimeError:  # no home directory: no netrc file either
        return {"use_env_settings": False}
    if any((home / name).exists() for name in (".netrc", "_netrc")):
        return {}
    return {"use_env_settings": False}


def default_credential() -> Any:
    """Managed identity / developer credential for identity-based connections (Azure)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


@contextmanager
def azureml_errors(
    what: str,
    *,
    rejected: type[ScorehookError],
    unavailable: type[ScorehookError],
    final: tuple[type[BaseException], ...] = (),
) -> Iterator[None]:
    """Map azure-ai-ml / azure-core errors inside the block: a 4xx (not 408/409/429) or one of the SDK's
    ``final`` exceptions (its own validation) → ``rejected`` (an input error: never retried); any other
    azure error → ``unavailable`` (transient)."""
    from azure.core.exceptions import AzureError, HttpResponseError

    try:
        yield
    except ScorehookError:
        raise
    except HttpResponseError as exc:
        status = exc.status_code or 0
        if 400 <= status < 500 and status not in (408, 409, 429):
            raise rejected(f"{what}: Azure ML rejected it ({status}): {exc.message}", status=status) from exc
        raise unavailable(f"{what}: Azure ML answered {status}: {exc.message}", status=status) from exc
    except final as exc:
        raise rejected(f"{what}: {type(exc).__name__}: {getattr(exc, 'message', exc)}") from exc
    except AzureError as exc:
        raise unavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
