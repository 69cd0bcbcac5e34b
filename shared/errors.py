"""The one error tree of Scorehook.

Every error the app raises derives from :class:`ScorehookError`. Two families decide what happens next:

* :class:`InputError` - the input (a file, an event, a model) can never succeed as it is. Final: the
  caller records it (failure record, ledger) and acknowledges the delivery so it is not retried.
* :class:`TransientError` - something we depend on is unavailable. The caller raises, so the delivery
  is retried by its source (Event Grid, a queue, the registry webhook).

Third-party exceptions are wrapped at the adapter boundary with ``raise ... from exc``.

Example:
    >>> try:
    ...     raise MissingFieldError("data.url", where="BlobCreated event")
    ... except InputError as exc:
    ...     print(exc.reason, "-", exc)
    missing_field - BlobCreated event: required field 'data.url' is missing
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlreadyClaimedError",
    "BlobChangedError",
    "BlobNotFoundError",
    "ConfigurationError",
    "EventError",
    "EventSourceError",
    "FileFormatError",
    "InputError",
    "MalformedEventError",
    "MissingFieldError",
    "ModelError",
    "ModelNotFoundError",
    "PublishError",
    "RegistryUnavailableError",
    "SchemaMismatchError",
    "ScorehookError",
    "StorageUnavailableError",
    "TransientError",
    "UnsupportedEventError",
]


class ScorehookError(Exception):
    """Root of every error Scorehook raises.

    ``reason`` is a stable, machine-readable code (snake_case) that goes into failure records and
    logs; ``details`` carries structured context (column, row, field, ...).
    """

    reason = "error"

    def __init__(self, message: str, *, reason: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.details = details

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready description, for failure records and logs.

        Example:
            >>> FileFormatError("bad CSV", row=3).to_record()
            {'reason': 'bad_file_format', 'error': 'FileFormatError', 'message': 'bad CSV', 'row': 3}
        """
        return {"reason": self.reason, "error": type(self).__name__, "message": self.message, **self.details}

    def log_fields(self) -> dict[str, Any]:
        """The same for a log line's ``extra`` (``message`` is reserved by ``logging``).

        Example:
            >>> FileFormatError("bad CSV", row=3).log_fields()
            {'reason': 'bad_file_format', 'error_type': 'FileFormatError', 'error': 'bad CSV', 'row': 3}
        """
        return {
            "reason": self.reason,
            "error_type": type(self).__name__,
            "error": self.message,
            **self.details,
        }


class ConfigurationError(ScorehookError):
    """A setting is missing or invalid: the app cannot run as configured."""

    reason = "configuration"


class InputError(ScorehookError):
    """Bad input (file, event, model): final, recorded, never retried."""

    reason = "bad_input"


class EventError(InputError):
    """An event that cannot be processed as it is."""

    reason = "bad_event"


class MalformedEventError(EventError):
    """The body is not a JSON event (or array of events) at all, or a field has the wrong type."""

    reason = "malformed_event"


class MissingFieldError(EventError):
    """A required field of an event is absent or empty.

    Example:
        >>> str(MissingFieldError("data.eTag", where="BlobCreated event"))
        "BlobCreated event: required field 'data.eTag' is missing"
    """

    reason = "missing_field"

    def __init__(self, field: str, *, where: str = "event") -> None:
        super().__init__(f"{where}: required field {field!r} is missing", field=field)
        self.field = field


class UnsupportedEventError(EventError):
    """An event type this endpoint does not handle."""

    reason = "unsupported_event"


class EventSourceError(EventError):
    """The event names a storage account, container or topic we do not serve, or disagrees with itself."""

    reason = "unknown_source"


class FileFormatError(InputError):
    """The file cannot be read in its declared format (corrupt, empty, wrong encoding)."""

    reason = "bad_file_format"


class SchemaMismatchError(InputError):
    """The file does not fit the model's input schema (missing column, wrong type, bad value)."""

    reason = "schema_mismatch"


class BlobNotFoundError(InputError):
    """The blob an event names does not exist (any more)."""

    reason = "blob_not_found"


class BlobChangedError(InputError):
    """The blob changed (new eTag) while it was being read: a newer event will score the new content."""

    reason = "blob_changed"


class ModelError(InputError):
    """A model that cannot be used (does not load, has no signature, fails its smoke test)."""

    reason = "bad_model"


class ModelNotFoundError(ModelError):
    """The model reference does not resolve to any registered version or blob."""

    reason = "model_not_found"


class TransientError(ScorehookError):
    """A dependency is unavailable right now: retry the delivery."""

    reason = "transient"


class StorageUnavailableError(TransientError):
    """Blob, queue or table storage did not answer as expected."""

    reason = "storage_unavailable"


class RegistryUnavailableError(TransientError):
    """The model registry did not answer."""

    reason = "registry_unavailable"


class PublishError(TransientError):
    """An event could not be published."""

    reason = "publish_failed"


class WriteConflictError(TransientError):
    """A conditional write lost: the blob changed between our check and our commit."""

    reason = "write_conflict"


class AlreadyClaimedError(TransientError):
    """Another instance holds a live claim on the same idempotency key: retry later."""

    reason = "already_claimed"
