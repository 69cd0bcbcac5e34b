"""Shared helpers for the Azure SDK adapters: credentials and error mapping."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
