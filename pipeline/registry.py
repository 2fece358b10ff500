"""The stage registry: recipe `type:` names -> Stage classes, the whole stage graph in one place."""

from __future__ import annotations

import importlib
from typing import TypeVar

from pipeline.manifest import ManifestError
from pipeline.stage import Stage

# Modules whose import registers stages. A new stage module is added here, nowhere else.
STAGE_MODULES = [
    "pipeline.ingest",
    "pipeline.report",
    "pipeline.tokenize",
    "classifiers.stage",
    "dedup.keys_stage",
    "dedup.lsh_stage",
    "dedup.components_stage",
    "dedup.remove_stage",
    "dedup.preloaded_stage",
    "filters.zyda1_stage",
    "filters.datatrove_filters",
    "filters.language",
    "filters.metadata",
]

_REGISTRY: dict[str, type[Stage]] = {}
_loaded = False
S = TypeVar("S", bound=type[Stage])


def register_stage(cls: S) -> S:
    """Class decorator: make `cls` usable as `type: <cls.type_name>` in recipes."""
    if not cls.type_name:
        raise TypeError(f"{cls.__name__} has no type_name")
    if _REGISTRY.get(cls.type_name, cls) is not cls:
        raise TypeError(f"stage type {cls.type_name!r} registered twice")
    _REGISTRY[cls.type_name] = cls
    return cls


def _load_all() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in STAGE_MODULES:
            importlib.import_module(module)


def stage_types() -> dict[str, type[Stage]]:
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def stage_class(type_name: str, where: str = "recipe") -> type[Stage]:
    _load_all()
    try:
        return _REGISTRY[type_name]
    except KeyError:
        raise ManifestError(f"{where}: unknown stage type {type_name!r}; known: {sorted(_REGISTRY)}") from None
