"""Model registrations from either front door, as one typed input: ``ModelVersionRegistered``.

* Azure ML: ``Microsoft.MachineLearningServices.ModelRegistered`` (Event Grid or CloudEvents schema). The
  docs show PascalCase ``data`` keys with an int version, SDK payloads camelCase with a string version:
  keys are read case-insensitively and versions become strings. The event's topic must be an allowed
  workspace.
* MLflow registry webhooks: the ``X-MLflow-Signature`` HMAC (``v1,<base64 HMAC-SHA256 over
  "delivery_id.timestamp.raw_body">``) is checked over the raw body with the shared secret, stale
  timestamps (more than 5 minutes) are refused, then ``model_version.created`` becomes a registration and
  ``model_version_tag.set`` of ``scorehook.approve=true`` an approval.

Example:
    >>> from shared.events import parse_event
    >>> event = parse_event({"id": "e1", "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
    ...     "subject": "models/churn:3", "eventTime": "2026-01-01T00:00:00Z",
    ...     "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws",
    ...     "data": {"ModelName": "churn", "ModelVersion": 3}})
    >>> registration = from_azureml_event(event, allowed_workspaces=("ws",))
    >>> (registration.name, registration.version, registration.origin, registration.idempotency_key)
    ('churn', '3', 'azureml', 'registration:churn/3')

A decision is keyed by the registry's identity of the version (``registration:NAME/VERSION@IDENTITY``, MLflow:
the creation timestamp), which the deployment flow reads from the registry: a model deleted and re-created
restarts at version 1 and its new v1 is decided again. The queue message between the front doors and the
flow carries references only (:func:`to_message`), and :func:`accept_delivery` marks an MLflow delivery only
after its message is queued.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.errors import (
    EventSourceError,
    InputError,
    MalformedEventError,
    MissingFieldError,
    UnsupportedEventError,
)
from shared.events import Event

__all__ = [
    "APPROVAL_TAG",
    "MODEL_REGISTERED",
    "ApprovalGranted",
    "ModelVersionRegistered",
    "WebhookAuthError",
    "accept_delivery",
    "correlation_of",
    "from_azureml_event",
    "from_message",
    "from_mlflow_webhook",
    "registration_key",
    "sign_mlflow_delivery",
    "to_message",
    "verify_mlflow_signature",
]

MODEL_REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"
APPROVAL_TAG = "scorehook.approve"
SIGNATURE_TOLERANCE_SECONDS = 300


class WebhookAuthError(InputError):
    """An unsigned, forged or replayed webhook delivery: answered 401, nothing changes."""

    reason = "unauthorized"


@dataclass(frozen=True)
class ModelVersionRegistered:
    """A new model version, whichever registry announced it."""

    name: str
    version: str
    origin: str  # "azureml" | "mlflow"
    delivery_id: str  # the event id / X-MLflow-Delivery-Id
    source: str | None = None
    run_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    workspace: str | None = None
    identity: str | None = None  # the registry's identity of the version (see ``ModelVersion.identity``)
    #: the drift report that led to this version (its tag ``scorehook.correlation_id``), if one did
    correlation_id: str | None = None

    @property
    def idempotency_key(self) -> str:
        """One decision per real model version, whichever door and however often it was announced."""
        return registration_key(self.name, self.version, self.identity)


def registration_key(name: str, version: str, identity: str | None = None) -> str:
    """The ledger key of the decision about one version: name, number and the registry's identity of it.

    Example:
        >>> registration_key("churn", "1", "1764590000123"), registration_key("churn", "1")
        ('registration:churn/1@1764590000123', 'registration:churn/1')
    """
    return f"registration:{name}/{version}" + (f"@{identity}" if identity else "")


@dataclass(frozen=True)
class ApprovalGranted:
    """A person approved a held version (tag ``scorehook.approve=true`` on it)."""

    name: str
    version: str
    delivery_id: str


def _lower(mapping: Any) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in mapping.items()} if isinstance(mapping, Mapping) else {}


def _workspace(topic: str) -> str | None:
    parts = topic.split("/")
    lowered = [p.lower() for p in parts]
    return parts[lowered.index("workspaces") + 1] if "workspaces" in lowered[:-1] else None


def allowed_workspace(event: Event, allowed_workspaces: tuple[str, ...]) -> str:
    """The Azure ML workspace an event's topic names, if it is an allowed one (else ``EventSourceError``).

    Example:
        >>> e = Event(id="1", type="t", source="/subscriptions/s/providers/x/workspaces/WS", subject="", time=None)
        >>> allowed_workspace(e, ("ws",))
        'WS'
    """
    workspace = _workspace(event.source)
    if workspace is None or workspace.lower() not in {w.lower() for w in allowed_workspaces}:
        raise EventSourceError(
            f"workspace {workspace!r} (topic {event.source!r}) is not an allowed Azure ML workspace",
            workspace=workspace,
        )
    return workspace


def from_azureml_event(event: Event, allowed_workspaces: tuple[str, ...]) -> ModelVersionRegistered:
    """An Azure ML ``ModelRegistered`` event (either schema, either casing) as a registration."""
    if event.type.lower() != MODEL_REGISTERED.lower():
        raise UnsupportedEventError(f"expected {MODEL_REGISTERED}, got {event.type!r}", event_type=event.type)
    workspace = allowed_workspace(event, allowed_workspaces)
    data = _lower(event.data)
    name, version = data.get("modelname"), data.get("modelversion")
    if (name in (None, "") or version in (None, "")) and event.subject.startswith("models/"):
        subject_name, _, subject_version = event.subject[len("models/") :].rpartition(":")
        name, version = name or subject_name, version if version not in (None, "") else subject_version
    if name in (None, ""):
        raise MissingFieldError("data.modelName", where="ModelRegistered event")
    if version in (None, ""):
        raise MissingFieldError("data.modelVersion", where="ModelRegistered event")
    if not isinstance(version, int | str) or isinstance(version, bool):
        raise MalformedEventError(
            f"data.modelVersion must be a number or a string, not {type(version).__name__}"
        )
    tags = _lower(event.data).get("modeltags") or {}
    tags = {str(k): str(v) for k, v in tags.items()} if isinstance(tags, Mapping) else {}
    return ModelVersionRegistered(
        name=str(name), version=str(version), origin="azureml", delivery_id=event.id, tags=tags,
        workspace=workspace, correlation_id=correlation_of(tags),
    )  # fmt: skip


def correlation_of(tags: Mapping[str, Any] | None) -> str | None:
    """The ``correlation_id`` a version's tags carry: ``scorehook.correlation_id``, else the retraining's
    decision tag (``scorehook.retrain.decision``, which is the same drift report id); ``None`` for a version
    no drift report led to. Cut to 200 characters (tags are untrusted).

    Example:
        >>> correlation_of({"scorehook.retrain.decision": "churn/3/20260101T000000Z"})
        'churn/3/20260101T000000Z'
    """
    from shared.ports import CORRELATION_TAG

    tags = tags or {}
    value = tags.get(CORRELATION_TAG) or tags.get("scorehook.retrain.decision")
    return str(value)[:200] if value else None


def sign_mlflow_delivery(secret: str, delivery_id: str, timestamp: str, raw_body: bytes) -> str:
    """The ``X-MLflow-Signature`` header MLflow sends for a delivery (used by tests and fakes).

    Example:
        >>> sign_mlflow_delivery("s3cret", "d-1", "1752494400", b"{}")
        'v1,CTq3goz6i3aysa7Am4S5PyW8mHJkb7RHW0L33ZGpBWw='
    """
    signed = f"{delivery_id}.{timestamp}.".encode() + raw_body
    return "v1," + base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()


def verify_mlflow_signature(
    secret: str, headers: Mapping[str, str], raw_body: bytes, *, now: float | None = None
) -> tuple[str, int]:
    """Check an MLflow webhook delivery; returns ``(delivery_id, timestamp)`` or raises ``WebhookAuthError``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    delivery_id = lowered.get("x-mlflow-delivery-id", "")
    timestamp = lowered.get("x-mlflow-timestamp", "")
    signature = lowered.get("x-mlflow-signature", "")
    if not secret:
        raise WebhookAuthError("no webhook secret is configured: deliveries cannot be verified")
    if not (delivery_id and timestamp and signature):
        raise WebhookAuthError(
            "unsigned delivery: X-MLflow-Delivery-Id, -Timestamp and -Signature are required"
        )
    try:
        sent = int(timestamp)
    except ValueError:
        raise WebhookAuthError(f"X-MLflow-Timestamp {timestamp!r} is not unix seconds") from None
    if abs((time.time() if now is None else now) - sent) > SIGNATURE_TOLERANCE_SECONDS:
        raise WebhookAuthError(f"stale delivery: timestamp {sent} is more than 5 minutes away (replayed?)")
    expected = sign_mlflow_delivery(secret, delivery_id, timestamp, raw_body)
    if not signature.startswith("v1,") or not hmac.compare_digest(expected, signature):
        raise WebhookAuthError("forged delivery: the signature does not match the body")
    return delivery_id, sent


def from_mlflow_webhook(
    secret: str, headers: Mapping[str, str], raw_body: bytes, *, now: float | None = None
) -> ModelVersionRegistered | ApprovalGranted | None:
    """A verified MLflow registry delivery as a registration, an approval, or ``None`` (nothing to do)."""
    delivery_id, _ = verify_mlflow_signature(secret, headers, raw_body, now=now)
    try:
        payload = json.loads(raw_body)
    except json.JSONDecodeError as exc:
        raise MalformedEventError(f"webhook body is not JSON: {exc.msg}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise MalformedEventError("webhook body must be an object with a data object")
    kind = f"{payload.get('entity')}.{payload.get('action')}"
    data = payload["data"]
    if kind == "model_version.created":
        for required in ("name", "version"):
            if data.get(required) in (None, ""):
                raise MissingFieldError(f"data.{required}", where="model_version.created delivery")
        tags = data.get("tags") if isinstance(data.get("tags"), Mapping) else {}
        tags = {str(k): str(v) for k, v in tags.items()}
        return ModelVersionRegistered(
            name=str(data["name"]), version=str(data["version"]), origin="mlflow", delivery_id=delivery_id,
            source=data.get("source"), run_id=data.get("run_id"), tags=tags, correlation_id=correlation_of(tags),
        )  # fmt: skip
    approved = str(data.get("value", "")).lower() == "true"
    if kind == "model_version_tag.set" and data.get("key") == APPROVAL_TAG and approved:
        return ApprovalGranted(name=str(data["name"]), version=str(data["version"]), delivery_id=delivery_id)
    return None


# What a queue message carries: references only, never tags, descriptions or bodies (a queue message is at
# most 64 KiB and MLflow allows 100,000-character tags); the flow reads the rest from the registry.
_MESSAGE_FIELDS = {"registration": ("name", "version", "origin", "delivery_id", "run_id", "workspace", "identity",
                                    "correlation_id"),
                   "approval": ("name", "version", "delivery_id")}  # fmt: skip
MAX_MESSAGE_BYTES = 48 * 1024  # base64 makes 64 KiB of queue message out of 48 KiB of text


def to_message(item: ModelVersionRegistered | ApprovalGranted) -> str:
    """The queue message that carries a registration or an approval to the deployment worker: references only.

    Example:
        >>> from_message(to_message(ApprovalGranted("m", "4", "d-1")))
        ApprovalGranted(name='m', version='4', delivery_id='d-1')
        >>> "tags" in to_message(ModelVersionRegistered("m", "1", "mlflow", "d-2", tags={"big": "x" * 60_000}))
        False
    """
    from shared.errors import TooLargeError
    from shared.telemetry import with_traceparent

    kind = "approval" if isinstance(item, ApprovalGranted) else "registration"
    text = json.dumps(
        with_traceparent({"kind": kind, **{f: getattr(item, f) for f in _MESSAGE_FIELDS[kind]}})
    )
    if len(text.encode()) > MAX_MESSAGE_BYTES:  # only names over every registry's limits get here
        raise TooLargeError(f"the {kind} message for {item.name[:100]!r} is {len(text.encode()):,} bytes",
                            limit="queue_message_bytes", maximum=MAX_MESSAGE_BYTES)  # fmt: skip
    return text


def from_message(text: str) -> ModelVersionRegistered | ApprovalGranted:
    """The registration or approval a queue message carries (fields of older messages beyond the references,
    such as ``tags``, are ignored)."""
    try:
        body = json.loads(text)
        kind = body.pop("kind")
        fields = {k: v for k, v in body.items() if k in _MESSAGE_FIELDS[kind]}
        return ApprovalGranted(**fields) if kind == "approval" else ModelVersionRegistered(**fields)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MalformedEventError(f"not a registration message: {exc}") from exc


def accept_delivery(
    item: ModelVersionRegistered | ApprovalGranted, ledger: Any, queue: Any, *, claim_ttl_seconds: float = 60
) -> str:
    """Queue a verified MLflow delivery once: ``"queued"``, or ``"duplicate"`` for a delivery id queued before.

    Outbox order: the delivery id is claimed, the message is sent, and only then is the delivery marked
    ``queued``. When the queue (or the ledger) is down the claim is released and the ``TransientError``
    propagates, so the webhook answers 5xx and MLflow's retry (same delivery id) queues it. A delivery
    another attempt is queueing right now raises ``AlreadyClaimedError`` (transient too).

    Example:
        >>> from shared.testing import FakeLedger, FakeQueue
        >>> ledger, queue = FakeLedger(), FakeQueue()
        >>> item = ApprovalGranted("m", "4", "d-1")
        >>> accept_delivery(item, ledger, queue), accept_delivery(item, ledger, queue), len(queue.messages)
        ('queued', 'duplicate', 1)
    """
    from shared.errors import AlreadyClaimedError

    key = f"delivery:{item.delivery_id}"
    kind = type(item).__name__
    claim = ledger.claim(key, "mlflow-webhook", claim_ttl_seconds, {"kind": kind})
    if claim is None:
        existing = ledger.get(key)
        if existing is not None and existing.status == "claimed":
            raise AlreadyClaimedError(
                f"delivery {item.delivery_id} is being queued by another attempt", key=key
            )
        return "duplicate"
    try:
        queue.send(to_message(item))
    except BaseException:
        ledger.release(claim)
        raise
    ledger.finish(claim, "queued", {"kind": kind, "model": item.name, "version": item.version,
                                    "queued_at": datetime.now(UTC).isoformat()})  # fmt: skip
    return "queued"
