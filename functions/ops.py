"""Operations endpoints: health (anonymous) and status (function key)."""

from __future__ import annotations

import json
from collections import Counter

import azure.functions as func

from functions._runtime import ledger
from shared.settings import get_settings

bp = func.Blueprint()


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness: answers without touching any dependency."""
    return func.HttpResponse(
        json.dumps({"status": "ok", "service": "scorehook"}), mimetype="application/json"
    )


@bp.function_name("status")
@bp.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def status(req: func.HttpRequest) -> func.HttpResponse:
    """What the ledger knows: how many files succeeded, failed or are in progress, and the settings in use."""
    counts = Counter(record.status for record in ledger().records())
    body = {"ledger": dict(counts), "settings": get_settings().redacted()}
    return func.HttpResponse(json.dumps(body, default=str), mimetype="application/json")
