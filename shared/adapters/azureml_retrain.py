"""The Azure retraining launcher: submits the Azure ML pipeline job of ``infra/ml/retrain-pipeline.yml``.

:func:`retrainer_job` builds the job offline from a :class:`RetrainRequest` (``load_job`` on the YAML, then
the inputs, tags, display name and compute set on the entity); :class:`AzureMLRetrainer` submits it with
``ml_client.jobs.create_or_update`` and returns at once. Nothing here waits for or polls the job: its
completion is learned from events (``RunCompleted``, the new version's registration).

Inputs bound from the request:

* ``drift_report``: ``uri_file`` on ``request.report`` (required).
* ``recent_data``: ``uri_folder`` on the deepest folder common to every URL of ``request.inputs``
  (they must share an account and a container), and ``recent_files``: the files' names relative to that
  folder, comma-separated. A folder plus a list, not the folder alone: the common folder may hold older
  files too, and the step must train on exactly the recent ones.
* ``model_name``, ``base_version``, ``decision_id``, ``reason`` (the step tags the new version with them).

String inputs are percent-encoded (``urllib.parse.quote``, ``/`` kept): blob names come from uploaders and
are substituted into the step's command line, so they must not carry shell syntax. ``training.retrain``
unquotes them. Job tags link the run to the decision: ``scorehook.decision_id``, ``scorehook.model``,
``scorehook.base_version``, ``scorehook.reason`` (they win over ``request.tags`` of the same names).

Errors: a bad request (no report, no inputs, inputs in several containers) and a 4xx or SDK validation
failure at submission raise :class:`RetrainRejectedError` (final); 5xx, 408/409/429 and transport errors
raise :class:`RetrainUnavailableError` (retry); an unreadable or invalid pipeline YAML raises
``ConfigurationError``. azure-ai-ml is imported inside functions only: importing it takes seconds.

Example:
    >>> recent_data(["https://acct.blob.core.windows.net/in/churn/d1/a.csv",
    ...              "https://acct.blob.core.windows.net/in/churn/d2/b c.csv"])
    ('https://acct.blob.core.windows.net/in/churn/', 'd1/a.csv,d2/b%20c.csv')
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from shared.errors import ConfigurationError, InputError, TransientError
from shared.ports import RetrainRequest, RetrainRun

__all__ = [
    "DEFAULT_PIPELINE_YAML",
    "AzureMLRetrainer",
    "RetrainRejectedError",
    "RetrainUnavailableError",
    "recent_data",
    "retrainer_job",
]

DEFAULT_PIPELINE_YAML = Path(__file__).resolve().parents[2] / "infra" / "ml" / "retrain-pipeline.yml"


class RetrainRejectedError(InputError):
    """A retraining that cannot be submitted as it is: bad request, or Azure ML rejected it (4xx, validation).

    Example:
        >>> RetrainRejectedError("no report").to_record()["reason"]
        'retrain_rejected'
    """

    reason = "retrain_rejected"


class RetrainUnavailableError(TransientError):
    """Azure ML did not take the job now (transport error, 5xx, 408/409/429): retry the delivery."""

    reason = "retrain_unavailable"


def _arg(value: str) -> str:
    """A string input safe on a command line (letters, digits, ``_.-~/`` and ``%XX``)."""
    return quote(value, safe="/")


def recent_data(urls: Iterable[str]) -> tuple[str, str]:
    """The ``recent_data`` folder URL and the ``recent_files`` list (relative, quoted, comma-separated).

    Query strings and fragments are dropped (access goes through the workspace's identity, not SAS).

    Example:
        >>> recent_data(["https://a.blob.core.windows.net/in/x.csv", "https://b.blob.core.windows.net/in/y.csv"])
        Traceback (most recent call last):
        ...
        shared.adapters.azureml_retrain.RetrainRejectedError: recent inputs are on several storage accounts: ...
    """
    unique = sorted(set(urls))
    parts = [urlsplit(url) for url in unique]
    if not parts:
        raise RetrainRejectedError("a retraining needs recent inputs: request.inputs is empty")
    roots = sorted({f"{p.scheme}://{p.netloc}" for p in parts})
    if len(roots) > 1 or not parts[0].scheme or not parts[0].netloc:
        raise RetrainRejectedError(f"recent inputs are on several storage accounts: {roots}", roots=roots)
    paths = [[s for s in p.path.split("/") if s] for p in parts]
    if any(len(path) < 2 for path in paths):
        raise RetrainRejectedError("recent inputs must be files inside a container", inputs=unique)
    common: list[str] = []
    for segments in zip(*(path[:-1] for path in paths), strict=False):
        if len(set(segments)) > 1:
            break
        common.append(segments[0])
    if not common:
        raise RetrainRejectedError("recent inputs are in several containers: no common folder to mount")
    files = ",".join(_arg(unquote("/".join(path[len(common) :]))) for path in paths)
    return f"{roots[0]}/{'/'.join(common)}/", files


def _display_name(request: RetrainRequest) -> str:
    digest = hashlib.sha256(request.decision_id.encode()).hexdigest()[:10]
    return f"retrain-{request.model}-v{request.model_version}-{digest}"


def _load(pipeline_yaml: str | Path) -> Any:
    from azure.ai.ml import load_job
    from azure.ai.ml.exceptions import MlException
    from marshmallow import ValidationError

    try:
        return load_job(pipeline_yaml)
    except (OSError, ValidationError, MlException) as exc:
        raise ConfigurationError(
            f"retraining pipeline {str(pipeline_yaml)!r} does not load: {exc}", path=str(pipeline_yaml)
        ) from exc


def retrainer_job(
    request: RetrainRequest,
    pipeline_yaml: str | Path = DEFAULT_PIPELINE_YAML,
    *,
    compute: str | None = None,
    experiment_name: str | None = None,
) -> Any:
    """The ``PipelineJob`` that retrains for ``request``: offline, nothing is sent.

    Example:
        >>> request = RetrainRequest("churn", "4", "churn/4/2024-05-01", "psi x1",
        ...                          inputs=("https://acct.blob.core.windows.net/in/a.csv",),
        ...                          report="https://acct.blob.core.windows.net/drift/r.json")
        >>> job = retrainer_job(request)  # doctest: +SKIP
        >>> job.tags["scorehook.decision_id"], job.inputs.recent_files._data  # doctest: +SKIP
        ('churn/4/2024-05-01', 'a.csv')
    """
    from azure.ai.ml import Input

    if not request.report:
        raise RetrainRejectedError(
            f"retraining {request.model} v{request.model_version} needs the drift report (request.report)",
            decision_id=request.decision_id,
        )
    folder, files = recent_data(request.inputs)
    job = _load(pipeline_yaml)
    job.inputs.drift_report = Input(type="uri_file", path=request.report)
    job.inputs.recent_data = Input(type="uri_folder", path=folder)
    job.inputs.recent_files = files
    job.inputs.model_name = _arg(request.model)
    job.inputs.base_version = _arg(request.model_version)
    job.inputs.decision_id = _arg(request.decision_id)
    job.inputs.reason = _arg(request.reason or "drift")
    job.tags = {
        **(job.tags or {}),
        **{str(k): str(v) for k, v in request.tags.items()},
        "scorehook.decision_id": request.decision_id,
        "scorehook.model": request.model,
        "scorehook.base_version": request.model_version,
        "scorehook.reason": request.reason,
    }
    job.display_name = _display_name(request)
    if compute:
        job.settings.default_compute = compute.removeprefix("azureml:")  # as load_job does for the YAML
    if experiment_name:
        job.experiment_name = experiment_name
    return job


@contextmanager
def _submit_errors(what: str) -> Iterator[None]:
    """4xx (not 408/409/429) and SDK errors → RetrainRejectedError; other azure errors → RetrainUnavailableError."""
    from azure.ai.ml.exceptions import MlException

    from shared.adapters._azure import azureml_errors

    with azureml_errors(
        what, rejected=RetrainRejectedError, unavailable=RetrainUnavailableError, final=(MlException,)
    ):
        yield


class AzureMLRetrainer:
    """:class:`shared.ports.Retrainer` over an ``azure.ai.ml.MLClient``: one ``jobs.create_or_update``, no wait.

    ``run_id`` is the Azure ML job name; ``details`` hold the studio URL and the experiment.

    Example:
        >>> from azure.ai.ml import MLClient  # doctest: +SKIP
        >>> retrainer = AzureMLRetrainer(MLClient(credential, sub, rg, workspace))  # doctest: +SKIP
        >>> retrainer.launch(request).run_id  # doctest: +SKIP
        'plucky_lemon_abc123'
    """

    launcher = "azureml"

    def __init__(
        self,
        ml_client: Any,
        pipeline_yaml: str | Path = DEFAULT_PIPELINE_YAML,
        experiment_name: str = "scorehook-retrain",
        compute: str | None = None,
    ) -> None:
        self._ml = ml_client
        self.pipeline_yaml = pipeline_yaml
        self.experiment_name = experiment_name
        self.compute = compute

    def launch(self, request: RetrainRequest) -> RetrainRun:
        """Submit the retraining pipeline for ``request`` and return the submitted job's name at once."""
        job = retrainer_job(
            request, self.pipeline_yaml, compute=self.compute, experiment_name=self.experiment_name
        )
        with _submit_errors(f"submit retraining of {request.model} v{request.model_version}"):
            submitted = self._ml.jobs.create_or_update(job, experiment_name=self.experiment_name)
        return RetrainRun(
            run_id=str(submitted.name),
            launcher=self.launcher,
            details={
                "studio_url": getattr(submitted, "studio_url", None),
                "experiment": self.experiment_name,
                "display_name": job.display_name,
                "decision_id": request.decision_id,
            },
        )
