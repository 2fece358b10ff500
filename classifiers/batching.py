"""Batches of documents for a transformer: sorted by token length so each batch pads little.

A batch is padded to its longest member, so mixing a 20-token and a 1000-token document wastes
980 positions of compute. Sorting by length first (stable, so ties keep arrival order and the
result is deterministic) makes neighbours similar; results are scattered back to arrival order.
"""

from __future__ import annotations

import numpy as np


def make_batches(lengths: np.ndarray, batch_size: int, sort_by_length: bool = True) -> list[np.ndarray]:
    """Row indices per batch: longest first when sorting (a memory error shows on the first batch)."""
    order = np.argsort(-lengths, kind="stable") if sort_by_length else np.arange(len(lengths))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def padding_fraction(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Share of the computed positions that are padding."""
    total = sum(int(lengths[b].max()) * len(b) for b in batches if len(b))
    real = int(lengths.sum())
    return 0.0 if total == 0 else 1.0 - real / total
