"""The forms a model reference (``SCOREHOOK_MODEL_URI``, a route's ``model``) may take, checked by form only.

* ``models:/NAME@ALIAS`` - the version an MLflow registry alias points at (re-resolved after the TTL);
* ``models:/NAME/VERSION`` - one registered version;
* ``blob://CONTAINER/PATH.onnx`` - an ONNX file in the data storage account.

A malformed reference is a configuration error found at start; a well-formed one that names no registered
model is found per file (``model_not_found``), because registering models is data, not configuration.

Example:
    >>> model_reference_problem("models:/churn@champion") is None
    True
    >>> model_reference_problem("model:/churn@champion")
    'expected models:/NAME@ALIAS, models:/NAME/VERSION or blob://CONTAINER/PATH.onnx'
"""

from __future__ import annotations

import re

__all__ = ["EXPECTED_MODEL_REFERENCE", "model_reference_problem"]

EXPECTED_MODEL_REFERENCE = "expected models:/NAME@ALIAS, models:/NAME/VERSION or blob://CONTAINER/PATH.onnx"

_REGISTRY = re.compile(r"^models:/(?P<name>[^/@\s]+)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>[1-9][0-9]*))$")
_BLOB = re.compile(r"^blob://(?P<container>[^/]+)/(?P<path>\S+)$")
_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")  # as shared.names checks it


def model_reference_problem(reference: object) -> str | None:
    """What is wrong with the form of a model reference, or ``None`` when it is well formed.

    Example:
        >>> model_reference_problem("blob://models/churn.pkl")
        'blob://models/churn.pkl: a blob model must be an .onnx file'
    """
    if not isinstance(reference, str) or not reference.strip():
        return EXPECTED_MODEL_REFERENCE
    text = reference.strip()
    if text.startswith("blob://"):
        match = _BLOB.match(text)
        if not match:
            return EXPECTED_MODEL_REFERENCE
        if not _CONTAINER.match(match["container"]):
            return f"{text}: {match['container']!r} is not a container name (3-63 lowercase letters, digits, hyphens)"
        if any(part in ("", ".", "..") for part in match["path"].split("/")):
            return f"{text}: the blob path has an empty, . or .. segment"
        if not match["path"].endswith(".onnx"):
            return f"{text}: a blob model must be an .onnx file"
        return None
    return None if _REGISTRY.match(text) else EXPECTED_MODEL_REFERENCE
