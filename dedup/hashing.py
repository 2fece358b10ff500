"""Compiled (numba) kernels: shingle hashing, MinHash signatures and band keys, straight from Arrow buffers.

Why compiled: a page of 2.5 KB has ~2,500 character 25-grams; 128 permutations of each is 320k
multiply-mods per document. numpy needs a (shingles x hashes) temporary per document; a fused
loop keeps one signature row in registers and reads the UTF-8 bytes once (bench/dedup.py measures
both against datasketch and datatrove).

Shingle hashes: a document is a sequence of units (Unicode code points, or words hashed from their
UTF-8 bytes); each window of `k` units gets a polynomial hash mod the Mersenne prime 2^61 - 1 with
a seeded random base (two different windows collide with probability <= k / 2^61), finished by
the MurmurHash3 avalanche so the permutations see well-mixed 61-bit values.
A document with fewer than `k` units has one shingle: all its units.

Permutations: `mersenne61` is the universal family (a*h + b) mod (2^61 - 1) computed exactly
with 32-bit limbs (vectorizes; a 128-bit product does not, and measured slower); `affine64`
(the default) is a*h + b mod 2^64 with odd `a` (datasketch 2.0's scheme): ~4x faster, bijective,
and as accurate on these avalanche-mixed shingle hashes (tests/test_dedup_accuracy.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

MERSENNE61 = np.uint64((1 << 61) - 1)
_M32 = np.uint64(0xFFFFFFFF)
_M29 = np.uint64((1 << 29) - 1)
_FMIX_C1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX_C2 = np.uint64(0xC4CEB9FE1A85EC53)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_U3 = np.uint64(3)
_U33 = np.uint64(33)
_U29 = np.uint64(29)
_U32 = np.uint64(32)
_U61 = np.uint64(61)

PERM_MERSENNE61 = 0
PERM_AFFINE64 = 1
UNIT_CHARS = 0
UNIT_WORDS = 1
CLASS_KEEP = 0
CLASS_DELETE = 1
CLASS_SPACE = 2


@njit(inline="always", cache=True)
def fmix64(h: np.uint64) -> np.uint64:
    """MurmurHash3's 64-bit finalizer: a bijection with full avalanche."""
    h ^= h >> _U33
    h *= _FMIX_C1
    h ^= h >> _U33
    h *= _FMIX_C2
    h ^= h >> _U33
    return h


@njit(inline="always", cache=True)
def mulmod61(x: np.uint64, y: np.uint64) -> np.uint64:
    """x * y mod 2^61 - 1 for x, y < 2^61, exactly, with 32x32-bit products only."""
    x_hi, x_lo = x >> _U32, x & _M32
    y_hi, y_lo = y >> _U32, y & _M32
    lo = x_lo * y_lo
    mid = x_hi * y_lo + x_lo * y_hi
    hi = x_hi * y_hi
    # 2^64 = 8 (mod p), 2^61 = 1 (mod p): fold every part below 2^61 and add (sum < 2^63).
    r = (hi << _U3) + (mid >> _U29) + ((mid & _M29) << _U32) + (lo >> _U61) + (lo & MERSENNE61)
    r = (r >> _U61) + (r & MERSENNE61)
    if r >= MERSENNE61:
        r -= MERSENNE61
    return r


@njit(inline="always", cache=True)
def addmod61(x: np.uint64, y: np.uint64) -> np.uint64:
    r = x + y
    if r >= MERSENNE61:
        r -= MERSENNE61
    return r


@njit(inline="always", cache=True)
def _decode(data: np.ndarray, i: int, end: int) -> tuple[np.uint64, int]:
    """The code point starting at byte i and its width (malformed bytes decode to something, never raise)."""
    b = np.uint64(data[i])
    if b < 0x80:
        return b, 1
    if b < 0xE0:
        cp, width = b & np.uint64(0x1F), 2
    elif b < 0xF0:
        cp, width = b & np.uint64(0x0F), 3
    else:
        cp, width = b & np.uint64(0x07), 4
    for j in range(1, width):
        if i + j < end:
            cp = (cp << np.uint64(6)) | (np.uint64(data[i + j]) & np.uint64(0x3F))
    return cp, width


@njit(inline="always", cache=True)
def _class(classes: np.ndarray, cp: np.uint64) -> int:
    if classes.shape[0] == 0 or cp >= classes.shape[0]:
        return CLASS_KEEP
    return classes[cp]


@njit(cache=True)
def _units(data: np.ndarray, start: int, end: int, unit_kind: int, classes: np.ndarray, out: np.ndarray) -> int:
    """Decode one document into units: code points, or hashes (< 2^61) of words.

    `classes[cp]` (empty: keep everything) says per code point: keep, delete (punctuation under
    `simple` normalization: "don't" -> "dont") or separate (whitespace: words split there; in
    character mode a run becomes one space, and leading/trailing runs vanish).
    """
    n = 0
    i = start
    if unit_kind == UNIT_CHARS:
        pending_space = False
        while i < end:
            cp, width = _decode(data, i, end)
            i += width
            kind = _class(classes, cp)
            if kind == CLASS_DELETE:
                continue
            if kind == CLASS_SPACE:
                pending_space = n > 0
                continue
            if pending_space:
                out[n] = np.uint64(33)
                n += 1
                pending_space = False
            out[n] = cp + np.uint64(1)
            n += 1
        return n
    in_word = False
    h = _FNV_OFFSET
    while i < end:
        cp, width = _decode(data, i, end)
        i += width
        kind = _class(classes, cp)
        if kind == CLASS_DELETE:
            continue
        if kind == CLASS_SPACE:
            if in_word:
                out[n] = fmix64(h) >> _U3
                n += 1
                in_word = False
            continue
        if not in_word:
            h = _FNV_OFFSET
            in_word = True
        h = (h ^ cp) * _FNV_PRIME
    if in_word:
        out[n] = fmix64(h) >> _U3
        n += 1
    return n


@njit(cache=True)
def _shingles(units: np.ndarray, n: int, k: int, base: np.uint64, out: np.ndarray) -> int:
    """Rolling polynomial hash of every window of k units (one window of all units if n < k)."""
    if n < k:
        h = np.uint64(0)
        for j in range(n):
            h = addmod61(mulmod61(h, base), units[j] % MERSENNE61)
        out[0] = fmix64(h ^ np.uint64(n)) >> _U3
        return 1
    top = np.uint64(1)  # base^(k-1)
    for _ in range(k - 1):
        top = mulmod61(top, base)
    h = np.uint64(0)
    for j in range(k):
        h = addmod61(mulmod61(h, base), units[j] % MERSENNE61)
    out[0] = fmix64(h) >> _U3
    for j in range(k, n):
        drop = mulmod61(units[j - k] % MERSENNE61, top)
        h = addmod61(h, MERSENNE61 - drop)
        h = addmod61(mulmod61(h, base), units[j] % MERSENNE61)
        out[j - k + 1] = fmix64(h) >> _U3
    return n - k + 1


@njit(cache=True)
def _sign(shingles: np.ndarray, n: int, a: np.ndarray, b: np.ndarray, perm: int, sig: np.ndarray) -> None:
    """sig[i] = min over shingles of permutation i; `sig` is one row of the output.

    Four shingles per pass over the hash functions: a, b and sig are loaded once per four
    permutation evaluations, and the inner loop vectorizes (AVX-512 / AVX2 where available).
    """
    m = a.shape[0]
    for i in range(m):
        sig[i] = np.uint64(0xFFFFFFFFFFFFFFFF)
    s = 0
    if perm == PERM_MERSENNE61:
        while s + 4 <= n:
            h0, h1, h2, h3 = shingles[s], shingles[s + 1], shingles[s + 2], shingles[s + 3]
            for i in range(m):
                ai, bi = a[i], b[i]
                v = min(min(addmod61(mulmod61(ai, h0), bi), addmod61(mulmod61(ai, h1), bi)),
                        min(addmod61(mulmod61(ai, h2), bi), addmod61(mulmod61(ai, h3), bi)))
                sig[i] = min(sig[i], v)
            s += 4
        while s < n:
            h0 = shingles[s]
            for i in range(m):
                sig[i] = min(sig[i], addmod61(mulmod61(a[i], h0), b[i]))
            s += 1
    else:
        while s + 4 <= n:
            h0, h1, h2, h3 = shingles[s], shingles[s + 1], shingles[s + 2], shingles[s + 3]
            for i in range(m):
                ai, bi = a[i], b[i]
                v = min(min(ai * h0 + bi, ai * h1 + bi), min(ai * h2 + bi, ai * h3 + bi))
                sig[i] = min(sig[i], v)
            s += 4
        while s < n:
            h0 = shingles[s]
            for i in range(m):
                sig[i] = min(sig[i], a[i] * h0 + b[i])
            s += 1


@njit(cache=True)
def _band_keys(sig: np.ndarray, bands: int, rows: int, seed: np.uint64, keys: np.ndarray) -> None:
    """One 64-bit key per band: equal bands give equal keys (different ones collide w.p. ~2^-64)."""
    for band in range(bands):
        h = fmix64(seed ^ np.uint64(band + 1))
        for r in range(rows):
            h = fmix64(h ^ sig[band * rows + r]) + np.uint64(r)
        keys[band] = h


@njit(cache=True)
def signatures_from_utf8(data: np.ndarray, offsets: np.ndarray, unit_kind: int, classes: np.ndarray, k: int,
                         base: np.uint64,
                         a: np.ndarray, b: np.ndarray, perm: int, bands: int, rows: int,
                         key_seed: np.uint64, sigs: np.ndarray, keys: np.ndarray, counts: np.ndarray) -> None:
    """Fused kernel over an Arrow string column: units -> shingles -> signature -> band keys.

    `data`/`offsets` are the column's UTF-8 buffer and its (n + 1) offsets; `counts[d]` receives
    the number of shingle windows of document d.
    """
    n_docs = offsets.shape[0] - 1
    longest = 1
    for d in range(n_docs):
        longest = max(longest, offsets[d + 1] - offsets[d])
    units = np.empty(longest + 1, dtype=np.uint64)
    shingles = np.empty(longest + 1, dtype=np.uint64)
    for d in range(n_docs):
        n = _units(data, offsets[d], offsets[d + 1], unit_kind, classes, units)
        count = _shingles(units, n, k, base, shingles)
        counts[d] = count
        _sign(shingles, count, a, b, perm, sigs[d])
        _band_keys(sigs[d], bands, rows, key_seed, keys[d])


@njit(cache=True)
def signatures_from_hashes(hashes: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray, perm: int,
                           bands: int, rows: int, key_seed: np.uint64, sigs: np.ndarray, keys: np.ndarray) -> None:
    """Signatures and band keys from precomputed shingle hashes (< 2^61), documents by offsets."""
    for d in range(offsets.shape[0] - 1):
        start, end = offsets[d], offsets[d + 1]
        _sign(hashes[start:end], end - start, a, b, perm, sigs[d])
        _band_keys(sigs[d], bands, rows, key_seed, keys[d])


@njit(cache=True)
def shingle_hashes_from_utf8(data: np.ndarray, offsets: np.ndarray, unit_kind: int, classes: np.ndarray, k: int,
                             base: np.uint64, out_offsets: np.ndarray) -> np.ndarray:
    """Every document's shingle hashes, concatenated (for Jaccard verification and tests)."""
    n_docs = offsets.shape[0] - 1
    total = 0
    for d in range(n_docs):
        total += max(offsets[d + 1] - offsets[d], 1)
    out = np.empty(total, dtype=np.uint64)
    units = np.empty(total + 1, dtype=np.uint64)
    pos = 0
    out_offsets[0] = 0
    for d in range(n_docs):
        n = _units(data, offsets[d], offsets[d + 1], unit_kind, classes, units)
        pos += _shingles(units, n, k, base, out[pos:])
        out_offsets[d + 1] = pos
    return out[:pos]


@njit(cache=True)
def mix_partition(values: np.ndarray, partitions: int) -> np.ndarray:
    """Hash-partition int64/uint64 values into [0, partitions): consecutive ids spread evenly."""
    out = np.empty(values.shape[0], dtype=np.int64)
    for i in range(values.shape[0]):
        h = fmix64(np.uint64(values[i]) ^ np.uint64(0x9E3779B97F4A7C15))
        out[i] = np.int64((h >> _U32) * np.uint64(partitions) >> _U32)
    return out


@njit(cache=True)
def exact_keys_from_utf8(data: np.ndarray, offsets: np.ndarray, classes: np.ndarray, base1: np.uint64,
                         base2: np.uint64, keys: np.ndarray) -> None:
    """Two independent polynomial hashes (122 bits) of each document's character units.

    Two different documents of length L share both with probability <= (L / 2^61)^2.
    """
    n_docs = offsets.shape[0] - 1
    longest = 1
    for d in range(n_docs):
        longest = max(longest, offsets[d + 1] - offsets[d])
    units = np.empty(longest + 1, dtype=np.uint64)
    for d in range(n_docs):
        n = _units(data, offsets[d], offsets[d + 1], UNIT_CHARS, classes, units)
        h1 = np.uint64(0)
        h2 = np.uint64(0)
        for j in range(n):
            h1 = addmod61(mulmod61(h1, base1), units[j])
            h2 = addmod61(mulmod61(h2, base2), units[j])
        keys[d, 0] = fmix64(h1 ^ np.uint64(n))
        keys[d, 1] = fmix64(h2 + np.uint64(n))
