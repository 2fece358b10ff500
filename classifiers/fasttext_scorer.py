"""fastText scoring: DCLM-style preprocessing and the probability of one label as the score.

DCLM's `fasttext_openhermes_reddit_eli5_vs_rw_v2_bigram_200k_train` classifier is applied to the
text with newlines joined to spaces (fastText reads one line per example) and its score is the
probability of `__label__hq`; the published DCLM-baseline keeps score >= 0.018112.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from classifiers.fasttext_file import check_fasttext_file
from pipeline.stage import StageError

LABEL_PREFIX = "__label__"


def full_label(label: str) -> str:
    return label if label.startswith(LABEL_PREFIX) else LABEL_PREFIX + label


def short_label(label: str) -> str:
    return label.removeprefix(LABEL_PREFIX)


def preprocess(text: str | None, max_chars: int | None = None) -> str:
    """One line per document, as DCLM scored it: every newline becomes a space."""
    text = text or ""
    if max_chars is not None:
        text = text[:max_chars]
    return text.replace("\r", " ").replace("\n", " ")


def load_fasttext(path: Path):
    """Load a checked model; fastText's own errors become a StageError that names the file."""
    import fasttext

    check_fasttext_file(path)
    try:
        return fasttext.load_model(str(path))
    except ValueError as exc:
        raise StageError(f"{path}: fastText cannot load it: {exc}") from None


def model_labels(model) -> list[str]:
    return [short_label(label) for label in model.get_labels()]


class FastTextScorer:
    """Scores batches with one loaded model: `score` = P(label), `pred` = the most likely label."""

    def __init__(self, path: Path, label: str, max_chars: int | None = None):
        self.model = load_fasttext(path)
        self.label = full_label(label)
        self.max_chars = max_chars
        self.calls = 0
        labels = self.model.get_labels()
        if self.label not in labels:
            raise StageError(f"{path}: the model has no label {short_label(self.label)!r}; "
                             f"its labels are {[short_label(x) for x in labels]}")

    def score(self, texts: Sequence[str | None]) -> dict[str, pa.Array]:
        """One batched `predict` over all labels (k=-1): `score` = the chosen label's probability,
        `pred` = the most likely label."""
        lines = [preprocess(t, self.max_chars) for t in texts]
        self.calls += 1
        labels, probs = self.model.predict(lines, k=-1)
        scores = np.zeros(len(lines), dtype=np.float64)
        preds: list[str] = []
        for i, (row_labels, row_probs) in enumerate(zip(labels, probs)):
            for label, prob in zip(row_labels, row_probs):
                if label == self.label:
                    scores[i] = float(prob)
                    break
            preds.append(short_label(row_labels[0]) if len(row_labels) else "")
        return {"score": pa.array(scores, pa.float64()), "pred": pa.array(preds, pa.string())}
