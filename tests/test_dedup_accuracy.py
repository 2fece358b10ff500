"""Detection rate by similarity bin matches the LSH S-curve 1 - (1 - s^r)^b, for every preset, through
the whole pipeline (planted pairs, true Jaccard by brute force); recall and precision are reported."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from dedup.api import fuzzy_dedup
from dedup.config import detection_probability, preset_config
from dedup.signatures import jaccard, shingle_sets
from dedup.synthetic import planted_corpus

# Edit fractions (of words) that spread true Jaccard over each preset's S-curve.
EDITS = {"zyda2": (0.0, 0.05), "datatrove": (0.0, 0.12), "zyda1": (0.0, 0.12)}


@pytest.mark.parametrize("preset,permutation", [("zyda2", "affine64"), ("datatrove", "affine64"),
                                                ("zyda1", "affine64"), ("datatrove", "mersenne61")])
def test_detection_rate_follows_the_s_curve(preset, permutation):
    corpus = planted_corpus(originals=260, duplicates=260, edit_range=EDITS[preset], seed=11, min_chars=1500)
    config = preset_config(preset, permutation=permutation)
    result = fuzzy_dedup(corpus.table, preset=preset, policy="keep_one", partitions=3, permutation=permutation)
    component = dict(zip(result["id"].to_pylist(), result["component"].to_pylist()))
    texts = dict(zip(corpus.table["id"].to_pylist(), corpus.table["text"].to_pylist()))
    sets = shingle_sets(pa.array([texts[a] for a, _ in corpus.pairs] + [texts[b] for _, b in corpus.pairs]), config)
    n = len(corpus.pairs)
    similarity = np.array([jaccard(sets[i], sets[n + i]) for i in range(n)])
    detected = np.array([component[a] == component[b] for a, b in corpus.pairs])
    expected = detection_probability(similarity, config.bands, config.rows)

    report = [f"{preset}: {config.describe()}"]
    edges = np.quantile(similarity, np.linspace(0, 1, 6))
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (similarity >= lo) & (similarity <= hi)
        p = expected[in_bin]
        sigma = np.sqrt(np.sum(p * (1 - p))) / p.size
        observed = detected[in_bin].mean()
        report.append(f"  J in [{lo:.2f}, {hi:.2f}]: {p.size} pairs, detected {observed:.3f}, "
                      f"S-curve {p.mean():.3f} +- {sigma:.3f}")
        assert abs(observed - p.mean()) <= 3.5 * sigma + 0.02, "\n".join(report)
    above = similarity >= config.threshold()
    removed = set(result.filter(result["removed"])["id"].to_pylist())
    partner = {b: a for a, b in corpus.pairs} | {a: b for a, b in corpus.pairs}
    true_removals = [d for d in removed if d in partner and component[d] == component[partner[d]]]
    recall = detected[above].mean()
    precision = len(true_removals) / max(len(removed), 1)
    print("\n".join(report) + f"\n  recall (J >= {config.threshold():.2f}) {recall:.3f} "
          f"(S-curve predicts {expected[above].mean():.3f}), precision {precision:.3f}")
    assert precision == 1.0
    assert recall >= expected[above].mean() - 3.5 * np.sqrt(np.sum(expected[above] * (1 - expected[above]))) / above.sum()
