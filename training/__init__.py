"""Scorehook training: a seeded synthetic data generator (:mod:`training.data`), a training pipeline that
exports ONNX + MLflow models and registers them (:mod:`training.train`), and retraining on recently scored
labelled data after a drift decision (:mod:`training.retrain`, ``python -m training.retrain``: blob URLs
read with a connection string, or a local folder such as an Azure ML job's mounted input).

Importing this package (or ``training.data``) imports neither scikit-learn nor mlflow.
"""

__all__ = ["data", "retrain", "train"]
