"""Classification metrics from a confusion matrix (numpy only: shared by train and evaluate)."""

from __future__ import annotations

import numpy as np


def confusion_matrix(targets: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64 counts; rows are the truth, columns the prediction."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(targets, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return cm


def per_class(cm: np.ndarray, labels: list[str] | tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per class; 0.0 where undefined (no predictions/support)."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }


def accuracy(cm: np.ndarray) -> float:
    total = cm.sum()
    return float(np.trace(cm) / total) if total else 0.0


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes that have support."""
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return 0.0
    return float((np.diag(cm)[present] / support[present]).mean())
