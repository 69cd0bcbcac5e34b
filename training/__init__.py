"""Scorehook training: a seeded synthetic data generator (:mod:`training.data`) and a training pipeline that
exports ONNX + MLflow models and registers them (:mod:`training.train`).

Importing this package (or ``training.data``) imports neither scikit-learn nor mlflow.
"""

__all__ = ["data", "train"]
