"""The stage registry: recipe `type:` names -> Stage classes, the whole stage graph in one place.

Classes are named by import path and imported on first use, so a process imports only the stages
it runs: importing all of them costs about 2 s and 190 MB (torch, transformers, datatrove, numba).
"""

from __future__ import annotations

import importlib
from typing import TypeVar

from pipeline.manifest import ManifestError
from pipeline.stage import Stage

STAGES: dict[str, str] = {
    # reading the sources, and the run report
    "ingest": "pipeline.ingest:IngestStage",
    "report": "pipeline.report:ReportStage",
    # heuristic filters
    "language_id": "filters.language:LanguageIdStage",
    "zyda1_filter": "filters.zyda1_stage:Zyda1FilterStage",
    "metadata_threshold": "filters.metadata:MetadataThresholdStage",
    "gopher_quality": "filters.datatrove_filters:GopherQualityStage",
    "gopher_repetition": "filters.datatrove_filters:GopherRepetitionStage",
    "c4_quality": "filters.datatrove_filters:C4QualityStage",
    "fineweb_quality": "filters.datatrove_filters:FineWebQualityStage",
    # model-based quality classifiers
    "classify": "classifiers.stage:ClassifyStage",
    # exact and MinHash-LSH dedup: keys, candidate edges, connected components, removal
    "exact_hash": "dedup.keys_stage:ExactHashStage",
    "minhash": "dedup.keys_stage:MinHashStage",
    "lsh": "dedup.lsh_stage:LshStage",
    "components": "dedup.components_stage:ComponentsStage",
    "dedup_remove": "dedup.remove_stage:DedupRemoveStage",
    "preloaded": "dedup.preloaded_stage:PreloadedStage",
    # Mistral v0.1 token shards for the trainer
    "tokenize": "pipeline.tokenize:TokenizeStage",
}

GROUPS: dict[str, tuple[str, ...]] = {
    "filter": ("language_id", "zyda1_filter", "metadata_threshold", "gopher_quality", "gopher_repetition",
               "c4_quality", "fineweb_quality"),
    "dedup": ("exact_hash", "minhash", "lsh", "components", "dedup_remove"),
}
"""Stage types that one CLI command runs together (`zyda filter`, `zyda dedup`)."""

LIBRARY_ONLY = ("preloaded",)
"""Stage types used by library calls (`dedup.fuzzy_dedup`), not by recipes: no CLI command."""

_PLUGINS: dict[str, type[Stage]] = {}
S = TypeVar("S", bound=type[Stage])


def register_stage(cls: S) -> S:
    """Class decorator for stage types defined outside this package (plugins, tests)."""
    if not cls.type_name or cls.type_name in STAGES:
        raise TypeError(f"{cls.__name__}: type_name {cls.type_name!r} is empty or taken")
    _PLUGINS[cls.type_name] = cls
    return cls


def type_names() -> list[str]:
    return sorted({*STAGES, *_PLUGINS})


def stage_class(type_name: str, where: str = "recipe") -> type[Stage]:
    if type_name in _PLUGINS:
        return _PLUGINS[type_name]
    if type_name not in STAGES:
        raise ManifestError(f"{where}: unknown stage type {type_name!r}; known: {type_names()}")
    module, name = STAGES[type_name].split(":")
    cls = getattr(importlib.import_module(module), name)
    if cls.type_name != type_name:
        raise TypeError(f"{STAGES[type_name]} has type_name {cls.type_name!r}, registered as {type_name!r}")
    return cls


def stage_types() -> dict[str, type[Stage]]:
    """Every stage class (imports every stage module)."""
    return {name: stage_class(name) for name in type_names()}
