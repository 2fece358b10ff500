"""Signatures and band keys of a batch of documents: Arrow string column in, numpy arrays out.

The text column's UTF-8 buffer goes to the compiled kernel as is (no per-document Python) unless
a normalization or the `xxh64` reference shingle hash needs Python strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from dedup.config import MinHashConfig
from dedup.hashing import (MERSENNE61, exact_keys_from_utf8, shingle_hashes_from_utf8, signatures_from_hashes,
                           signatures_from_utf8)
from dedup.normalize import char_classes, kernel_prepass, normalizer


@dataclass
class Signatures:
    sigs: np.ndarray
    """(documents, num_hashes) uint64: min of each permutation."""
    keys: np.ndarray
    """(documents, bands) uint64: one key per band."""


def utf8_buffers(texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(data uint8, offsets int64) of a string column; nulls read as empty strings."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
    if pa.types.is_binary(texts.type) or pa.types.is_large_binary(texts.type):
        texts = texts.cast(pa.large_binary())
    elif not pa.types.is_large_string(texts.type):
        texts = texts.cast(pa.large_string())
    if texts.null_count:
        texts = pc.fill_null(texts, "")
    _, offsets_buf, data_buf = texts.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[texts.offset: texts.offset + len(texts) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(1, np.uint8)
    return data, np.ascontiguousarray(offsets)


def _apply(texts: pa.Array | pa.ChunkedArray, function: Callable[[str], str] | None) -> pa.Array | pa.ChunkedArray:
    if function is None:
        return texts
    return pa.array([function(_as_str(t)) for t in texts.to_pylist()], type=pa.large_string())


def _as_str(value: str | bytes | None) -> str:
    """A text value as str: null is empty, undecodable bytes are replaced rather than fatal."""
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def kernel_input(texts: pa.Array | pa.ChunkedArray, config: MinHashConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(UTF-8 data, offsets, code point classes) for the compiled kernels, after the Python pre-pass."""
    data, offsets = utf8_buffers(_apply(texts, kernel_prepass(config.normalize)))
    if config.normalize == "simple":
        classes = char_classes("simple")
    elif config.shingle == "words":
        classes = char_classes("spaces")
    else:
        classes = np.zeros(0, dtype=np.uint8)
    return data, offsets, classes


def exact_keys(texts: pa.Array | pa.ChunkedArray, normalize: str, seed: int) -> np.ndarray:
    """(documents, 2) uint64: a 122-bit hash of each text after `normalize` (exact duplicates share it)."""
    config = MinHashConfig(shingle="chars", k=1, normalize=normalize, bands=1, rows=1, seed=seed)  # type: ignore[arg-type]
    data, offsets, classes = kernel_input(texts, config)
    rng = np.random.Generator(np.random.PCG64([seed, 0xE8AC7]))
    base1, base2 = (np.uint64(x) for x in rng.integers(2**20, int(MERSENNE61) - 1, size=2, dtype=np.uint64))
    keys = np.empty((len(texts), 2), dtype=np.uint64)
    exact_keys_from_utf8(data, offsets, classes, base1, base2, keys)
    return keys


def _xxh64_shingles(texts: pa.Array | pa.ChunkedArray, config: MinHashConfig) -> tuple[np.ndarray, np.ndarray]:
    """Reference shingle hashes: xxhash64 of each shingle's text (words joined by one space)."""
    hashes: list[int] = []
    offsets = [0]
    k = config.k
    for value in texts.to_pylist():
        text = _as_str(value)
        units: list[str] | str = text.split() if config.shingle == "words" else text
        if len(units) < k:
            grams = [units]
        else:
            grams = [units[i:i + k] for i in range(len(units) - k + 1)]
        joiner = " " if config.shingle == "words" else ""
        hashes.extend(xxhash.xxh64_intdigest(joiner.join(g).encode(), seed=config.seed) >> 3 for g in grams)
        offsets.append(len(hashes))
    return np.array(hashes, dtype=np.uint64), np.array(offsets, dtype=np.int64)


def compute_signatures(texts: pa.Array | pa.ChunkedArray, config: MinHashConfig) -> Signatures:
    """MinHash signature and band keys of each document of `texts` (raw, unnormalized text)."""
    n = len(texts)
    sigs = np.empty((n, config.num_hashes), dtype=np.uint64)
    keys = np.empty((n, config.bands), dtype=np.uint64)
    if n == 0:
        return Signatures(sigs, keys)
    a, b = config.permutations()
    if config.shingle_hash == "xxh64":
        hashes, offsets = _xxh64_shingles(_apply(texts, normalizer(config.normalize)), config)
        signatures_from_hashes(hashes, offsets, a, b, config.perm_kind, config.bands, config.rows,
                               config.key_seed(), sigs, keys)
    else:
        data, offsets, classes = kernel_input(texts, config)
        counts = np.empty(n, dtype=np.int64)
        signatures_from_utf8(data, offsets, config.unit_kind, classes, config.k, config.base(), a, b,
                             config.perm_kind, config.bands, config.rows, config.key_seed(), sigs, keys, counts)
    return Signatures(sigs, keys)


def shingle_sets(texts: pa.Array | pa.ChunkedArray, config: MinHashConfig) -> list[np.ndarray]:
    """Each document's set of shingle hashes (sorted, unique): what Jaccard similarity is taken of."""
    if config.shingle_hash == "xxh64":
        hashes, offsets = _xxh64_shingles(_apply(texts, normalizer(config.normalize)), config)
    else:
        data, offsets_in, classes = kernel_input(texts, config)
        offsets = np.empty(len(texts) + 1, dtype=np.int64)
        hashes = shingle_hashes_from_utf8(data, offsets_in, config.unit_kind, classes, config.k, config.base(),
                                          offsets)
    return [np.unique(hashes[offsets[i]:offsets[i + 1]]) for i in range(len(texts))]


def jaccard(x: np.ndarray, y: np.ndarray) -> float:
    """Jaccard similarity of two sorted unique hash arrays."""
    inter = np.intersect1d(x, y, assume_unique=True).size
    union = x.size + y.size - inter
    return inter / union if union else 1.0
