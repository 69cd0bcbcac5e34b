"""Composition root: builds the FunctionApp and registers one Blueprint per concern.

Importing this module is cheap: heavy libraries (mlflow, onnxruntime, pyarrow, SDK clients) load on
first use inside the functions. It checks the configuration (settings, routes, model URIs, schedules):
a bad one stops the app at start with one error listing every problem, which the Functions host reports.
"""

import azure.functions as func

from shared.telemetry import configure_telemetry

configure_telemetry()  # Application Insights when APPLICATIONINSIGHTS_CONNECTION_STRING is set, else nothing

from functions import batch, deadletters, deployment, drift, fanout, ops, scoring  # noqa: E402 - after the exporters
from shared.startup import check_configuration  # noqa: E402

settings, _ = check_configuration()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(scoring.bp)
app.register_functions(deployment.bp)
app.register_functions(drift.bp)
app.register_functions(ops.bp)
app.register_functions(deadletters.bp)
app.register_functions(batch.bp)
app.register_functions(fanout.bp)
if settings.stream_enabled:  # an Event Hubs namespace is configured (EventHubs__fullyQualifiedNamespace)
    from functions import streaming

    app.register_functions(streaming.bp)
