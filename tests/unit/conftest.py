"""Unit-test fixtures: a tiny ONNX model trained here (two numeric columns and one categorical), and
the scoring service wired to the in-memory fakes of ``shared.testing``."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.models import ModelCache, ModelProvider
from shared.scoring import ScoringService
from shared.settings import Settings
from shared.testing import FakeBlobStore, FakeLedger, FakePublisher, FakeRegistry


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np
    import pandas as pd
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "x1": rng.normal(size=400),
            "x2": rng.normal(size=400),
            "color": rng.choice(["red", "green", "blue"], 400),
        }
    )
    label = ((frame.x1 + (frame.color == "red")) > 0.5).astype(int)
    pipeline = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["x1", "x2"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["color"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression()),
        ]
    ).fit(frame, label)
    onx = to_onnx(
        pipeline,
        initial_types=[
            ("x1", FloatTensorType([None, 1])),
            ("x2", FloatTensorType([None, 1])),
            ("color", StringTensorType([None, 1])),
        ],
        options={id(pipeline.steps[-1][1]): {"zipmap": False}},
    )
    path = tmp_path_factory.mktemp("model") / "model.onnx"
    path.write_bytes(onx.SerializeToString())
    return path


class Scoring:
    """The scoring service and its fakes, for one test."""

    def __init__(self, model_path: Path) -> None:
        self.blobs, self.ledger, self.publisher, self.registry = (
            FakeBlobStore(),
            FakeLedger(),
            FakePublisher(),
            FakeRegistry(),
        )
        self.version = self.registry.register("tiny", model_path, alias="champion")
        self.models = ModelCache()
        self.provider = ModelProvider(self.registry, self.blobs, self.models, ttl_seconds=60)
        self.settings = Settings.from_env({}, model_uri="models:/tiny@champion")
        self.service = ScoringService(self.blobs, self.ledger, self.provider, self.publisher, self.settings)

    def upload(self, name: str, data: bytes, container: str = "incoming") -> dict:
        """Put a blob and return the BlobCreated event (Event Grid schema) devhost would send for it."""
        etag = self.blobs.write_bytes(container, name, data)
        return {
            "id": f"evt-{name}-{etag.strip(chr(34))}",
            "topic": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
            "subject": f"/blobServices/default/containers/{container}/blobs/{name}",
            "eventType": "Microsoft.Storage.BlobCreated",
            "eventTime": "2026-11-23T10:00:00.1234567Z",
            "data": {
                "api": "PutBlob",
                "eTag": etag,
                "contentLength": len(data),
                "blobType": "BlockBlob",
                "url": f"http://127.0.0.1:10000/devstoreaccount1/{container}/{name}",
                "sequencer": f"{int(etag.strip(chr(34)), 16):032x}",
            },
            "dataVersion": "",
            "metadataVersion": "1",
        }


@pytest.fixture
def scoring(tiny_onnx: Path) -> Scoring:
    return Scoring(tiny_onnx)
