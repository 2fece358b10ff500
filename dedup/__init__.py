"""Exact and MinHash-LSH deduplication: shingling, signatures, banding, connected components,
source-priority resolution and removal, as recipe stages and as a library call."""

from dedup.api import exact_dedup, fuzzy_dedup

__all__ = ["exact_dedup", "fuzzy_dedup"]
