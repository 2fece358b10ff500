"""Character-class counts (`\\s`, `\\w`, `\\d`, word separators) and character runs in one pass.

The Zyda-1 features count regex character classes (`[^\\w\\s]`, `\\d`, the separators of its word
split) and runs of a repeated word character (`(\\w)\\1{6,}`). Instead of one regex pass each, a
lookup table over every code point, built once per process *with the same regex engine* (so the
classes agree with `re` by construction), feeds small numba loops over the code point array.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

import numba
import numpy as np

SPACE, WORD, DIGIT, SEPARATOR = 1, 2, 4, 8
_CLASSES = ((SPACE, r"\s"), (WORD, r"\w"), (DIGIT, r"\d"), (SEPARATOR, r"\s|-|/|\\|\."))


class TextStats(NamedTuple):
    separators: int
    """Characters matching `\\s|-|/|\\\\|\\.` (the Zyda-1 word split)."""
    non_alphanumeric: int
    """Characters matching `[^\\w\\s]`."""
    digits: int
    """Characters matching `\\d`."""
    longest_run: int
    """Length of the longest run of one repeated code point."""


@functools.cache
def class_table() -> np.ndarray:
    """uint8 class flags for every code point 0..0x10FFFF (~0.5 s, once per process)."""
    every_char = "".join(map(chr, range(0x110000)))
    table = np.zeros(0x110000, dtype=np.uint8)
    for flag, pattern in _CLASSES:
        matched = "".join(re.findall(pattern, every_char)).encode("utf-32-le", "surrogatepass")
        table[np.frombuffer(matched, dtype=np.uint32)] |= flag
    return table


def text_stats(codepoints: np.ndarray) -> TextStats:
    """Class counts and the longest run of `codepoints` (a text as a uint32 array)."""
    return TextStats(*_stats(codepoints, class_table()))


def count_word_runs(codepoints: np.ndarray, min_run: int) -> int:
    """`len(re.findall(r"(\\w)\\1{min_run - 1,}", text))`: maximal runs of one word character of
    length >= min_run (the regex, greedy, consumes each such run whole and matches no shorter one)."""
    return int(_word_runs(codepoints, class_table(), min_run))


@numba.njit(cache=True, nogil=True)
def _stats(codepoints, table):  # pragma: no cover
    separators = non_alnum = digits = 0
    longest = run = 0
    previous = np.uint32(0xFFFFFFFF)
    for i in range(codepoints.shape[0]):
        cp = codepoints[i]
        flags = table[cp]
        if flags & 8:
            separators += 1
        if flags & 3 == 0:
            non_alnum += 1
        if flags & 4:
            digits += 1
        run = run + 1 if cp == previous else 1
        if run > longest:
            longest = run
        previous = cp
    return separators, non_alnum, digits, longest


@numba.njit(cache=True, nogil=True)
def _word_runs(codepoints, table, min_run):  # pragma: no cover
    count = 0
    n = codepoints.shape[0]
    i = 0
    while i < n:
        j = i + 1
        while j < n and codepoints[j] == codepoints[i]:
            j += 1
        if j - i >= min_run and table[codepoints[i]] & 2:
            count += 1
        i = j
    return count
