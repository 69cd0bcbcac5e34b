"""The app's scoring and ops blueprints only: a second instance that scores files but takes no deployment
queue messages (its settings differ from the first instance's, so it must not decide registrations)."""

from __future__ import annotations

import azure.functions as func

from functions import ops, scoring

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(scoring.bp)
app.register_functions(ops.bp)
