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
    "FAILURE_REASONS",
    "AlreadyClaimedError",
    "BadNameError",
    "BatchFailedError",
    "BlobChangedError",
    "BlobNotFoundError",
    "ConfigurationError",
    "EmptyFileError",
    "EventError",
    "EventSourceError",
    "FileFormatError",
    "InputError",
    "InvalidValueError",
    "MalformedEventError",
    "MissingFieldError",
    "MissingValueError",
    "ModelError",
    "ModelNotFoundError",
    "NotUtf8Error",
    "PublishError",
    "RegistryUnavailableError",
    "SchemaMismatchError",
    "ScorehookError",
    "StorageUnavailableError",
    "TooLargeError",
    "TransientError",
    "UnsupportedEventError",
    "UnsupportedFormatError",
    "WrongTypeError",
]

# The closed set of reasons a failure record can carry: reason -> what it means to a person. Every
# ``InputError`` raised while scoring has one of these (a test pins it); ``docs/operate.md`` lists them.
FAILURE_REASONS: dict[str, str] = {
    "bad_event": "the event cannot be trusted: a name with ./.. segments, control characters or over Azure's limits, "
    "a URL that is not the configured account's endpoint, a subject that disagrees with the URL",
    "malformed_event": "the delivery is not a valid event: not JSON, not an object, a field of the wrong type",
    "missing_field": "a required field of the event is absent or empty",
    "unsupported_event": "an event type or schema version this endpoint does not handle",
    "unknown_source": "the event names a storage account or blob that no route serves",
    "too_large": "a limit was exceeded: event or delivery size, file size, record or field bytes, inflated size "
    "or inflation ratio of a gzip file, number of columns",
    "empty_file": "the file has no data rows (empty, header only)",
    "not_utf8": "the text is not UTF-8 (the record says which row, and UTF-16 when it is)",
    "unsupported_format": "the file's extension is not a format Scorehook reads (.csv, .csv.gz, .jsonl, .parquet)",
    "bad_file_format": "the file cannot be read in its format (corrupt gzip or Parquet, a broken CSV record)",
    "schema_mismatch": "the columns do not fit the model: a required column missing, a duplicated column name",
    "wrong_type": "a column has a type the model cannot take (text where a number is declared)",
    "bad_value": "a value does not parse as its column's declared type",
    "invalid_value": "a value the model must not see: inf, -inf, Infinity",
    "missing_value": "an empty model input, with on_missing=fail (or every row rejected with reject_rows)",
    "blob_not_found": "the blob the event names does not exist (any more)",
    "blob_changed": "the blob changed while it was read: the newer event scores the new content",
    "model_not_found": "the route's model reference resolves to no registered version or blob",
    "bad_model": "the model cannot be used (does not load, has no usable signature)",
    "batch_failed": "an Azure ML batch endpoint refused the file's job, or the job ended Failed or Canceled",
    "dead_lettered": "Event Grid gave up delivering the event (its dead-letter reason is in the record), or the "
    "Functions host gave up on a part of a fanned-out file (its queue message went to scorehook-parts-poison)",
}


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


class BadNameError(EventError):
    """An event names something the app must not touch: ``.``/``..`` segments, control characters, a
    backslash, a name over Azure's limits, a URL outside the configured account's endpoints."""

    reason = "bad_event"


class TooLargeError(InputError):
    """A limit was exceeded (event, delivery, file, record, inflated bytes, columns); ``limit`` names it."""

    reason = "too_large"


class FileFormatError(InputError):
    """The file cannot be read in its declared format (corrupt, empty, wrong encoding)."""

    reason = "bad_file_format"


class EmptyFileError(FileFormatError):
    """The file has no data rows (zero bytes, or a header only)."""

    reason = "empty_file"


class NotUtf8Error(FileFormatError):
    """Text that is not UTF-8 (``encoding`` says ``utf-16`` when a UTF-16 byte order mark or layout is seen)."""

    reason = "not_utf8"


class UnsupportedFormatError(FileFormatError):
    """An extension (or declared format) Scorehook does not read."""

    reason = "unsupported_format"


class SchemaMismatchError(InputError):
    """The file does not fit the model's input schema (missing column, wrong type, bad value)."""

    reason = "schema_mismatch"


class WrongTypeError(SchemaMismatchError):
    """A column's type cannot be what the model declares (text where a number is expected)."""

    reason = "wrong_type"


class InvalidValueError(SchemaMismatchError):
    """A value the model must not see (``inf``, ``-inf``)."""

    reason = "invalid_value"


class MissingValueError(SchemaMismatchError):
    """An empty model input where the route says ``on_missing: fail``."""

    reason = "missing_value"


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


class BatchFailedError(InputError):
    """A file offloaded to an Azure ML batch endpoint that will not be scored as it is: the endpoint refused
    the job (4xx, SDK validation) or the job ended Failed or Canceled."""

    reason = "batch_failed"


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
