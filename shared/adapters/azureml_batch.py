"""The Azure ML batch endpoint adapter: :class:`shared.ports.BatchScorer` over ``azure.ai.ml.MLClient``.

:meth:`AzureMLBatchScorer.submit` is one ``ml_client.batch_endpoints.invoke(endpoint, deployment_name=...,
inputs={"input": Input(type="uri_file", path=<blob URL>)}, job_name=..., experiment_name=...)`` (plus
``outputs={"score": Output(type="uri_file", path=...)}`` when the request names an output path); it returns at
once. :meth:`AzureMLBatchScorer.outputs` reads a finished job's outputs with ``ml_client.jobs.get``. Nothing
here polls: completion is learned from the job's ``RunCompleted`` / ``RunStatusChanged`` event.

Errors: a 4xx (not 408/409/429) or the SDK's own validation → :class:`~shared.errors.BatchFailedError`
(final); 5xx, 408/409/429 and transport errors → :class:`BatchUnavailableError` (retried). azure-ai-ml is
imported inside functions only: importing it takes seconds.

azure-ai-ml 1.35 builds the invoke's headers in its class-level ``EndpointInvokeFields.DEFAULT_HEADER`` dict,
so an ``azureml-model-deployment`` header set for one invocation is sent with every later one, even for
another endpoint without a deployment. Invocations here are serialised and drop that header before and after.

Example:
    >>> from azure.ai.ml import MLClient  # doctest: +SKIP
    >>> scorer = AzureMLBatchScorer(MLClient(credential, sub, rg, workspace))  # doctest: +SKIP
    >>> scorer.submit(BatchJobRequest("churn-batch", "https://acct.blob.core.windows.net/in/a.csv",
    ...                               "scorehook-1a2b")).job_name  # doctest: +SKIP
    'scorehook-1a2b'
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from shared.errors import BatchFailedError, TransientError
from shared.ports import BatchJobRequest, BatchSubmission

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "AzureMLBatchScorer", "BatchUnavailableError", "invoke_arguments"]

INPUT_NAME = "input"  # the input name of a batch deployment (MLflow no-code and scoring-script deployments)
OUTPUT_NAME = "score"  # the output name of a batch deployment's predictions
_INVOKE_LOCK = threading.Lock()  # the SDK's invoke headers are one process-wide dict (see above)


class BatchUnavailableError(TransientError):
    """Azure ML did not take the batch job now (transport error, 5xx, 408/409/429): retry the delivery."""

    reason = "batch_unavailable"


def invoke_arguments(request: BatchJobRequest) -> dict[str, Any]:
    """The keyword arguments of ``batch_endpoints.invoke`` for one request, built with the SDK's entities.

    Example:
        >>> kwargs = invoke_arguments(BatchJobRequest("ep", "https://a.blob.core.windows.net/in/x.csv", "job-1"))
        >>> kwargs["inputs"]["input"].type, kwargs["inputs"]["input"].path, kwargs["job_name"]
        ('uri_file', 'https://a.blob.core.windows.net/in/x.csv', 'job-1')
    """
    from azure.ai.ml import Input, Output

    kwargs: dict[str, Any] = {
        "endpoint_name": request.endpoint,
        "inputs": {INPUT_NAME: Input(type="uri_file", path=request.input_url)},
        "job_name": request.job_name,
        "experiment_name": request.experiment_name,
    }
    if request.deployment:
        kwargs["deployment_name"] = request.deployment
    if request.output_path:
        kwargs["outputs"] = {OUTPUT_NAME: Output(type="uri_file", path=request.output_path)}
    return kwargs


@contextmanager
def _invoke_errors(what: str) -> Iterator[None]:
    from azure.ai.ml.exceptions import MlException

    from shared.adapters._azure import azureml_errors

    with azureml_errors(
        what, rejected=BatchFailedError, unavailable=BatchUnavailableError, final=(MlException,)
    ):
        yield


def _drop_deployment_header() -> None:
    from azure.ai.ml.constants._endpoint import EndpointInvokeFields

    EndpointInvokeFields.DEFAULT_HEADER.pop(EndpointInvokeFields.MODEL_DEPLOYMENT, None)


class AzureMLBatchScorer:
    """:class:`shared.ports.BatchScorer` over an ``MLClient``: one ``batch_endpoints.invoke``, no wait."""

    def __init__(self, ml_client: Any) -> None:
        self._ml = ml_client

    def submit(self, request: BatchJobRequest) -> BatchSubmission:
        """Invoke the batch endpoint for one file; the job is named ``request.job_name``."""
        kwargs = invoke_arguments(request)
        endpoint = kwargs.pop("endpoint_name")
        with _INVOKE_LOCK, _invoke_errors(f"invoke batch endpoint {endpoint} for {request.input_url}"):
            _drop_deployment_header()
            try:
                job = self._ml.batch_endpoints.invoke(endpoint, **kwargs)
            finally:
                _drop_deployment_header()
        return BatchSubmission(
            job_name=str(getattr(job, "name", None) or request.job_name),
            status=getattr(job, "status", None),
            details={"job_id": getattr(job, "id", None)},
        )

    def outputs(self, job_name: str) -> Mapping[str, str]:
        """Output name -> path of a finished job (outputs without a path are left out)."""
        with _invoke_errors(f"read the outputs of batch job {job_name}"):
            job = self._ml.jobs.get(job_name)
        found: dict[str, str] = {}
        for name, output in (getattr(job, "outputs", None) or {}).items():
            path = getattr(output, "path", None)
            if path:
                found[str(name)] = str(path)
        return found
