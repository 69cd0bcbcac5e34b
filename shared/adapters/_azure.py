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


_PROXY_SETTINGS = frozenset({"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "NETRC"})


def transport_options(environ: Mapping[str, str] | None = None, home: Path | None = None) -> dict[str, Any]:
    """Keyword arguments for an Azure SDK client's HTTP transport: ``use_env_settings=False`` unless the
    environment sets a proxy or a netrc file, with a CA bundle it names (``REQUESTS_CA_BUNDLE``,
    ``CURL_CA_BUNDLE``) passed as ``connection_verify``, as ``requests`` itself would take it.

    With the environment trusted, ``requests`` reads it again on every request (proxies, netrc, CA bundle):
    ~0.7 ms of CPU a request with a hundred app settings, a tenth of devhost's GIL time in a burst.

    Example:
        >>> transport_options({"PATH": "/bin"}, home=Path("/nonexistent"))
        {'use_env_settings': False}
        >>> transport_options({"REQUESTS_CA_BUNDLE": "/etc/ca.pem"}, home=Path("/nonexistent"))
        {'use_env_settings': False, 'connection_verify': '/etc/ca.pem'}
        >>> transport_options({"https_proxy": "http://proxy:3128"})
        {}
    """
    environ = os.environ if environ is None else environ
    if any(name.upper() in _PROXY_SETTINGS for name in environ):
        return {}
    try:
        home = Path.home() if home is None else home
    except RuntimeError:  # no home directory: no netrc file either
        home = None
    if home is not None and any((home / name).exists() for name in (".netrc", "_netrc")):
        return {}
    options: dict[str, Any] = {"use_env_settings": False}
    bundle = environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE")
    if bundle:
        options["connection_verify"] = bundle
    return options


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
