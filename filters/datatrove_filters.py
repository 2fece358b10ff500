"""datatrove's Gopher, C4 and FineWeb heuristic filters as recipe stages, used as they are.

Each stage's `params` are exactly the filter's constructor arguments (names and defaults are read
from datatrove's signature, so they cannot drift), validated strictly at recipe load:

    - id: gopher
      type: gopher_quality
      params: {min_doc_words: 50, max_avg_word_length: 10, language: eng}

Drop reasons are datatrove's own, prefixed by the stage type's short name
(`gopher_quality:gopher_short_doc`, `c4_quality:too_few_sentences`, `fineweb_quality:char_dup_ratio`).
C4's line filtering edits the text of the documents it keeps.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                        GopherRepetitionFilter)
from datatrove.pipeline.filters.base_filter import BaseFilter
from pydantic import BaseModel, ConfigDict, create_model

from filters.filter_stage import FilterStage

_NOT_PARAMS = {"self", "exclusion_writer"}
_TYPE_FIXES: dict[str, Any] = {
    "top_n_grams": list[tuple[int, float]],
    "dup_n_grams": list[tuple[int, float]],
    "stop_chars": list[str] | None,
}
"""datatrove annotates these as 1-tuples; recipes give lists of (n, fraction) pairs / characters."""


def params_model(name: str, filter_cls: type[BaseFilter]) -> type[BaseModel]:
    """A strict pydantic model of `filter_cls.__init__`'s arguments, with datatrove's defaults
    (bound to a module-level `name` so instances pickle to Ray workers by reference)."""
    fields: dict[str, Any] = {}
    for arg, parameter in inspect.signature(filter_cls.__init__).parameters.items():
        if arg in _NOT_PARAMS:
            continue
        default = parameter.default
        if arg in _TYPE_FIXES and isinstance(default, tuple):
            default = [tuple(v) if isinstance(v, tuple) else v for v in default]
        fields[arg] = (_TYPE_FIXES.get(arg, parameter.annotation), default)
    return create_model(name, __config__=ConfigDict(extra="forbid", frozen=True), __module__=__name__, **fields)


def _as_filter_kwargs(params: BaseModel) -> dict[str, Any]:
    kwargs = params.model_dump()
    for name in ("top_n_grams", "dup_n_grams", "stop_chars"):
        if kwargs.get(name) is not None:
            kwargs[name] = tuple(tuple(v) if isinstance(v, list) else v for v in kwargs[name])
    return kwargs


GopherQualityParams = params_model("GopherQualityParams", GopherQualityFilter)
GopherRepetitionParams = params_model("GopherRepetitionParams", GopherRepetitionFilter)
C4QualityParams = params_model("C4QualityParams", C4QualityFilter)
FineWebQualityParams = params_model("FineWebQualityParams", FineWebQualityFilter)


class DatatroveFilterStage(FilterStage):
    """A datatrove filter class, constructed on each worker from the stage's params."""

    filter_cls: ClassVar[type[BaseFilter]]

    def build_filter(self) -> BaseFilter:
        return self.filter_cls(**_as_filter_kwargs(self.params))


class GopherQualityStage(DatatroveFilterStage):
    """Gopher quality rules (word counts and lengths, symbols, bullets, ellipses, stop words)."""

    type_name = reason_prefix = "gopher_quality"
    filter_cls = GopherQualityFilter
    Params = GopherQualityParams


class GopherRepetitionStage(DatatroveFilterStage):
    """Gopher repetition rules (duplicate lines/paragraphs, top and duplicated n-grams)."""

    type_name = reason_prefix = "gopher_repetition"
    filter_cls = GopherRepetitionFilter
    Params = GopherRepetitionParams


class C4QualityStage(DatatroveFilterStage):
    """C4 rules: line-level cleanup (terminal punctuation, javascript, policy lines) and page rules."""

    type_name = reason_prefix = "c4_quality"
    filter_cls = C4QualityFilter
    Params = C4QualityParams


class FineWebQualityStage(DatatroveFilterStage):
    """FineWeb's rules (line punctuation, short lines, duplicated characters, list-like pages)."""

    type_name = reason_prefix = "fineweb_quality"
    filter_cls = FineWebQualityFilter
    Params = FineWebQualityParams
