"""Binary classification metrics for a held-out set: precision, recall, F1 at a threshold, ROC AUC.

ROC AUC is the Mann-Whitney statistic: the probability that a random positive scores above a
random negative, ties counting one half (average ranks), which is exactly the area under the
step ROC curve.
"""

from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    labels = np.asarray(labels, dtype=bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    from scipy.stats import rankdata  # scipy.stats costs ~1 s to import: only when evaluating

    ranks = rankdata(scores)  # average ranks for ties
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float | int]:
    """`labels` True for positives; a document is predicted positive when score >= threshold."""
    labels = np.asarray(labels, dtype=bool)
    predicted = np.asarray(scores) >= threshold
    tp = int((predicted & labels).sum())
    fp = int((predicted & ~labels).sum())
    fn = int((~predicted & labels).sum())
    tn = int((~predicted & ~labels).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": threshold, "precision": precision, "recall": recall, "f1": f1,
            "accuracy": (tp + tn) / len(labels) if len(labels) else 0.0,
            "roc_auc": roc_auc(labels, np.asarray(scores)), "tp": tp, "fp": fp, "tn": tn, "fn": fn,
            "positives": int(labels.sum()), "negatives": int((~labels).sum())}
