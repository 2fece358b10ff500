"""Count many regexes in one text, exactly as `len(re.findall(p, text))` does for each, but fast.

Word-list filters (Zyda-1, after Cerebras' SlimPajama and the Pile) treat every entry as a regex
and run one `re.findall` per entry: ~150 passes over every document. Nearly every entry is a plain
literal, or a regex that cannot match unless some literal occurs. So:

- one pass of `filters.literal_scan.LiteralScanner` counts every literal entry (non-overlapping,
  leftmost first: the same count as `re.findall` of that literal) and every regex's required
  literal at once;
- a regex entry runs `re.findall` only when its required literal occurred;
- a regex without a usable literal runs only when its fixed-offset character signature occurs
  (e.g. ` ... ... ...` needs a space every 4 characters), checked by a small numba loop;
- anything the analysis does not understand (flags, lookarounds...) simply always runs `re.findall`.

The result is identical to the straightforward loop by construction; tests fuzz it against it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numba
import numpy as np

from filters.literal_scan import LiteralScanner

try:  # Python >= 3.11; the fallback treats every entry as an opaque regex (still exact).
    from re import _constants as _sre_c  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    _sre_parse = None
    _sre_c = None

_UNICODE_ONLY = re.UNICODE
_MIN_SIGNATURE = 3
"""A fixed-offset signature needs at least this many literal positions to be worth checking."""


@dataclass(frozen=True)
class _Entry:
    index: int
    pattern: str
    literal: str | None
    """The whole pattern is this literal string (no regex semantics left)."""
    needle: str | None
    """A literal every match contains (>= 2 chars); None when there is none worth searching for."""
    signature: tuple[tuple[int, int], ...]
    """(offset, code point) pairs every match has, from its fixed-width prefix."""


def _analyse(index: int, pattern: str) -> _Entry:
    """Literal form, required literal and fixed-offset signature of one regex, conservatively."""
    if _sre_parse is None:
        return _Entry(index, pattern, None, None, ())
    try:
        parsed = _sre_parse.parse(pattern)
    except re.error:
        raise ValueError(f"not a valid regular expression: {pattern!r}") from None
    if parsed.state.flags & ~_UNICODE_ONLY:
        return _Entry(index, pattern, None, None, ())
    items = list(parsed)
    if items and all(op is _sre_c.LITERAL for op, _ in items):
        literal = "".join(chr(code) for _, code in items)
        return _Entry(index, pattern, literal, literal if len(literal) >= 2 else None, ())
    runs, current = [], []
    for op, arg in items:
        if op is _sre_c.LITERAL:
            current.append(chr(arg))
        else:
            runs.append("".join(current))
            current = []
    runs.append("".join(current))
    needle = max(runs, key=len)
    signature: list[tuple[int, int]] = []
    offset = 0
    for op, arg in items:
        if op is _sre_c.LITERAL:
            signature.append((offset, arg))
        elif op not in (_sre_c.ANY, _sre_c.NOT_LITERAL, _sre_c.IN):
            break
        offset += 1
    return _Entry(index, pattern, None, needle if len(needle) >= 2 else None,
                  tuple(signature) if len(signature) >= _MIN_SIGNATURE else ())


class PatternCounter:
    """`counts(text)[i] == len(re.findall(patterns[i], text))` for every i, with far fewer passes."""

    def __init__(self, patterns: Sequence[str]):
        self.patterns = list(patterns)
        entries = [_analyse(i, p) for i, p in enumerate(self.patterns)]
        self._compiled = {e.index: re.compile(e.pattern) for e in entries if e.literal is None}
        scanned = sorted({e.literal or e.needle for e in entries if (e.literal or e.needle)})
        self._scanner = LiteralScanner(scanned)
        slot = {literal: k for k, literal in enumerate(scanned)}
        self._literals = [(e.index, slot[e.literal]) for e in entries if e.literal]
        self._needled = [(e.index, slot[e.needle]) for e in entries if e.literal is None and e.needle]
        self._signed = [(e.index, np.array([o for o, _ in e.signature], dtype=np.int64),
                         np.array([c for _, c in e.signature], dtype=np.uint32))
                        for e in entries if e.literal is None and e.needle is None and e.signature]
        self._always = [e.index for e in entries if e.literal is None and e.needle is None and not e.signature]

    def counts(self, text: str, codepoints: np.ndarray | None = None) -> list[int]:
        """Match counts per pattern; `codepoints` is `text` as a uint32 array, if the caller has it."""
        if codepoints is None:
            codepoints = as_codepoints(text)
        result = [0] * len(self.patterns)
        found = self._scanner.counts(codepoints).tolist()
        for index, k in self._literals:
            result[index] = found[k]
        for index, k in self._needled:
            if found[k]:
                result[index] = len(self._compiled[index].findall(text))
        for index, offsets, codes in self._signed:
            if _has_signature(codepoints, offsets, codes):
                result[index] = len(self._compiled[index].findall(text))
        for index in self._always:
            result[index] = len(self._compiled[index].findall(text))
        return result


def as_codepoints(text: str) -> np.ndarray:
    """`text` as a uint32 array of code points (lone surrogates included, as Python sees them)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


@numba.njit(cache=True, nogil=True)
def _has_signature(codepoints, offsets, codes):  # pragma: no cover
    """Whether some i has codepoints[i + offsets[j]] == codes[j] for every j."""
    last = codepoints.shape[0] - offsets[-1]
    first_offset, first_code, size = offsets[0], codes[0], offsets.shape[0]
    for i in range(last):
        if codepoints[i + first_offset] != first_code:
            continue
        j = 1
        while j < size and codepoints[i + offsets[j]] == codes[j]:
            j += 1
        if j == size:
            return True
    return False
