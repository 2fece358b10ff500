"""Exact and MinHash-LSH deduplication: shingling, signatures, banding, connected components,
source-priority resolution and removal, as recipe stages and as a library call."""

from typing import Any

__all__ = ["exact_dedup", "fuzzy_dedup"]


def __getattr__(name: str) -> Any:
    """`dedup.fuzzy_dedup` without importing numba for every `dedup.*` import (the CLI's start-up)."""
    if name in __all__:
        from dedup import api

        return getattr(api, name)
    raise AttributeError(f"module 'dedup' has no attribute {name!r}")
