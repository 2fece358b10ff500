"""The Zyda-1 syntactic filter, faithful to Zyphra/Zyda_processing, as a datatrove `BaseFilter`.

Semantics (checked against an oracle of the original code on 2,000 documents, to the last count):
- transform: runs of `- _ / \\n \\r . , : ?` and NBSP of 10 or more become one character, runs of
  40+ spaces one space, 20+ tabs one tab, and (an upstream quirk of a doubly escaped pattern) runs of
  20+ backslashes two backslashes. Zyda-1 kept the transformed text as the document text.
- features on the raw text: mean word length (split on whitespace, `-`, `/`, `\\`, `.`, empty pieces
  included), fractions of `[^\\w\\s]` and `\\d` characters (over the raw length), regex match counts of
  eight patterns and of every word-list entry (each entry is a case-sensitive regex);
  on the transformed text: runs of 7+ identical word characters (`(\\w)\\1{6,}`).
- rules, in order, the first failure is the reason; length and every fraction rule divide by the
  length of the transformed text.

Speed: the original runs ~150 regex passes per document. Here the character classes and the
longest character run come from one pass (`filters.charclass`), the transform runs only when a
run of 7+ identical characters exists, and patterns and word lists go through
`filters.pattern_counter` (one Aho-Corasick pass, then only the candidates). See bench/filters.py.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from filters.charclass import count_word_runs, text_stats
from filters.pattern_counter import PatternCounter, as_codepoints
from filters.wordlists import UPSTREAM_BASE_URL, WORD_LIST_NAMES, WordListError, load_word_lists

log = logging.getLogger("zyda.filters")

FEATURES_KEY = "zyda1_features"
PATTERNS = ("xml", "<?xml version=", "lorem ipsum", "https://", "<", ">", '":', "www.")
TRANSFORM_RUNS = (("-", 10, "-"), (" ", 40, " "), ("_", 10, "_"), ("/", 10, "/"), ("\\", 20, "\\\\"),
                  ("\n", 10, "\n"), ("\t", 20, "\t"), ("\r", 10, "\r"), (".", 10, "."), (",", 10, ","),
                  (":", 10, ":"), ("?", 10, "?"), ("\xa0", 10, "\xa0"))
"""(character, shortest run replaced, replacement), as the upstream `CHARS_FOR_TRANSFORM` acts."""
REPEAT_RUN = 7
"""`(\\w)\\1{6,}`: a word character repeated 7 or more times."""
_MIN_TRANSFORM_RUN = min(run for _, run, _ in TRANSFORM_RUNS)
_SHORTEST_RUN = min(REPEAT_RUN, _MIN_TRANSFORM_RUN)
_TRANSFORMS = tuple((char * run, re.compile(re.escape(char) * run + "+"), replacement.replace("\\", "\\\\"))
                    for char, run, replacement in TRANSFORM_RUNS)
"""(shortest run, its regex, `re.sub` template). `--------+`, not `-{10,}`: a literal prefix lets
`re` skip ahead with a fast search instead of trying the repeat at every position (~25x faster)."""


class Zyda1Thresholds(BaseModel):
    """The rule thresholds; defaults are Zyda-1's (`zyda/utils/filtering.py`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_length: int = Field(default=100, ge=1)
    min_mean_word_length: float = 3
    max_mean_word_length: float = 12
    max_fraction_non_alphanumeric: float = 0.3
    max_fraction_numerical: float = 0.2
    max_repeated_substrings: int = 50
    patterns_with_max_counts: dict[str, int] = {"xml": 10, "<?xml version=": 1, "lorem ipsum": 2}
    patterns_with_max_fractions: dict[str, float] = {"https://": 0.002, "<": 0.03, '":': 0.002, "www.": 0.01}
    word_lists_with_max_counts: dict[str, int] = {"zh_pornsignals.json": 1, "sexual_word_list.json": 10}
    word_lists_with_max_fractions: dict[str, float] = {"sexual_word_list.json": 0.001,
                                                       "profanity_word_list.json": 0.0025,
                                                       "cursed_substrings.json": 0.01}

    @model_validator(mode="after")
    def _known_keys(self) -> "Zyda1Thresholds":
        for field, known in (("patterns_with_max_counts", PATTERNS), ("patterns_with_max_fractions", PATTERNS),
                             ("word_lists_with_max_counts", WORD_LIST_NAMES),
                             ("word_lists_with_max_fractions", WORD_LIST_NAMES)):
            unknown = sorted(set(getattr(self, field)) - set(known))
            if unknown:
                raise ValueError(f"{field}: unknown keys {unknown}; known: {list(known)}")
        return self


@dataclass
class Zyda1Features:
    """What Zyda-1 stored per document as `filtering_features` (same names and meanings)."""

    mean_word_length: float
    fraction_non_alphanumeric: float
    fraction_numerical: float
    substrings_counts: int
    pattern_counts: dict[str, int]
    word_list_counts: dict[str, int]
    """Keyed by word-list file name; empty when the word-list rules are skipped."""

    def to_dict(self) -> dict:
        return asdict(self)


def transform(text: str) -> str:
    """Collapse long runs of separator characters, as Zyda-1 did before keeping the text.

    One `re.sub` per character, each only when its shortest replaced run occurs (a fast `str`
    search); collapsing one character's runs never creates or merges runs of another.
    """
    for shortest, pattern, replacement in _TRANSFORMS:
        if shortest in text:
            text = pattern.sub(replacement, text)
    return text


class Zyda1Scorer:
    """Features and the keep decision of one text; the part of the filter without datatrove."""

    def __init__(self, word_lists: Mapping[str, Sequence[str]] | None, thresholds: Zyda1Thresholds | None = None):
        self.thresholds = thresholds or Zyda1Thresholds()
        self.word_lists = {name: list(word_lists[name]) for name in WORD_LIST_NAMES} if word_lists else None
        entries = list(PATTERNS)
        self._list_slices: dict[str, slice] = {}
        for name, words in (self.word_lists or {}).items():
            self._list_slices[name] = slice(len(entries), len(entries) + len(words))
            entries.extend(words)
        self._counter = PatternCounter(entries)

    def features(self, text: str) -> tuple[Zyda1Features, str]:
        """(features, transformed text); the transformed text is `text` itself when nothing changes."""
        codepoints = as_codepoints(text)
        n = len(text)
        stats = text_stats(codepoints)
        transformed, repeats = text, 0
        if stats.longest_run >= _SHORTEST_RUN:
            transformed = transform(text)
            repeats = count_word_runs(codepoints if transformed is text else as_codepoints(transformed), REPEAT_RUN)
        counts = self._counter.counts(text, codepoints)
        features = Zyda1Features(
            mean_word_length=(n - stats.separators) / (stats.separators + 1) if n else 0.0,
            fraction_non_alphanumeric=stats.non_alphanumeric / n if n else 0.0,
            fraction_numerical=stats.digits / n if n else 0.0,
            substrings_counts=repeats,
            pattern_counts=dict(zip(PATTERNS, counts)),
            word_list_counts={name: sum(counts[s]) for name, s in self._list_slices.items()})
        return features, transformed

    def decide(self, features: Zyda1Features, transformed_length: int) -> str | None:
        """The first failing rule's name (as in the oracle's `drop_reason`), or None to keep."""
        th, f = self.thresholds, features
        if transformed_length < th.min_length:
            return "min_length"
        if f.mean_word_length < th.min_mean_word_length:
            return "min_mean_word_length"
        if f.mean_word_length > th.max_mean_word_length:
            return "max_mean_word_length"
        if f.fraction_non_alphanumeric > th.max_fraction_non_alphanumeric:
            return "max_fraction_non_alphanumeric"
        if f.fraction_numerical > th.max_fraction_numerical:
            return "max_fraction_numerical"
        if f.substrings_counts > th.max_repeated_substrings:
            return "max_repeated_substrings"
        for pattern, max_count in th.patterns_with_max_counts.items():
            if f.pattern_counts[pattern] > max_count:
                return f"pattern_count:{pattern}"
        for pattern, max_fraction in th.patterns_with_max_fractions.items():
            if f.pattern_counts[pattern] / transformed_length > max_fraction:
                return f"pattern_fraction:{pattern}"
        if self.word_lists is None:
            return None
        for name, max_count in th.word_lists_with_max_counts.items():
            if f.word_list_counts[name] > max_count:
                return f"word_list_count:{name}"
        for name, max_fraction in th.word_lists_with_max_fractions.items():
            if f.word_list_counts[name] / transformed_length > max_fraction:
                return f"word_list_fraction:{name}"
        return None


class Zyda1Filter(BaseFilter):
    """Zyda-1's filter: `filter(doc)` -> True or (False, rule); features in `doc.metadata`.

    Word lists come from `word_lists` (already loaded; an empty mapping means none), else
    `word_lists_dir`, else the cached or downloaded upstream copy (sha256-verified). Without them,
    `require_word_lists=False` runs the other rules and sets `word_lists_skipped`; otherwise a
    `WordListError` says how to provide them.
    """

    name = "Zyda-1 filter"

    def __init__(self, word_lists_dir: str | Path | None = None, keep_transformed: bool = True, *,
                 word_lists: Mapping[str, Sequence[str]] | None = None, require_word_lists: bool = True,
                 word_lists_url: str = UPSTREAM_BASE_URL, thresholds: Zyda1Thresholds | None = None,
                 exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.keep_transformed = keep_transformed
        if word_lists is None:
            try:
                word_lists = load_word_lists(word_lists_dir, word_lists_url)
            except WordListError as exc:
                if require_word_lists:
                    raise
                log.warning("Zyda-1 word-list rules skipped: %s", exc)
        self.word_lists_skipped = not word_lists
        self.scorer = Zyda1Scorer(word_lists, thresholds)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        text = doc.text if isinstance(doc.text, str) else ""
        features, transformed = self.scorer.features(text)
        doc.metadata[FEATURES_KEY] = features.to_dict()
        if self.keep_transformed:
            doc.text = transformed
        reason = self.scorer.decide(features, len(transformed))
        return True if reason is None else (False, reason)
