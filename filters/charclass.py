"""Per-character class counts (`\\s`, `\\w`, `\\d`, word separators) in one numpy pass.

The Zyda-1 features count regex character classes (`[^\\w\\s]`, `\\d`, the separators of its word
split). Instead of one `re.findall` per class, a lookup table over every code point, built once
per process *with the same regex engine* (so the classes agree with `re` by construction), turns
a document into class flags with one fancy index and one `bincount`.
"""

from __future__ import annotations

import functools
import re

import numpy as np

SPACE, WORD, DIGIT, SEPARATOR = 1, 2, 4, 8
_CLASSES = ((SPACE, r"\s"), (WORD, r"\w"), (DIGIT, r"\d"), (SEPARATOR, r"\s|-|/|\\|\."))
_FLAG_VALUES = np.arange(16)
_SEPARATOR_FLAGS = _FLAG_VALUES[(_FLAG_VALUES & SEPARATOR) != 0]
_NON_ALNUM_FLAGS = _FLAG_VALUES[(_FLAG_VALUES & (WORD | SPACE)) == 0]
_DIGIT_FLAGS = _FLAG_VALUES[(_FLAG_VALUES & DIGIT) != 0]


@functools.cache
def class_table() -> np.ndarray:
    """uint8 flags for every code point 0..0x10FFFF (~0.5 s, once per process)."""
    every_char = "".join(map(chr, range(0x110000)))
    table = np.zeros(0x110000, dtype=np.uint8)
    for flag, pattern in _CLASSES:
        matched = "".join(re.findall(pattern, every_char)).encode("utf-32-le", "surrogatepass")
        table[np.frombuffer(matched, dtype=np.uint32)] |= flag
    return table


def class_counts(codepoints: np.ndarray) -> tuple[int, int, int]:
    """(separators, non-alphanumerics `[^\\w\\s]`, digits `\\d`) among `codepoints`."""
    bins = np.bincount(class_table()[codepoints], minlength=16)
    return int(bins[_SEPARATOR_FLAGS].sum()), int(bins[_NON_ALNUM_FLAGS].sum()), int(bins[_DIGIT_FLAGS].sum())
