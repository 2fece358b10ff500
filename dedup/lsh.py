"""LSH buckets -> candidate edges, and the optional Jaccard verification of candidates.

Documents sharing a (band, key) bucket are candidates. A bucket of k documents contributes k - 1
edges, a star from its smallest node: that keeps every bucket connected with the fewest edges
(and stars are what the component rounds converge to anyway).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa

from dedup.config import MinHashConfig
from dedup.signatures import jaccard, shingle_sets


@dataclass
class Buckets:
    """Members of every bucket with at least two documents, bucket by bucket (nodes ascending)."""

    nodes: np.ndarray
    starts: np.ndarray
    """Index in `nodes` of each bucket's first member; one past the end is `nodes.size`."""

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(np.append(self.starts, self.nodes.size))

    def members(self, bucket: int) -> np.ndarray:
        end = self.starts[bucket + 1] if bucket + 1 < self.starts.size else self.nodes.size
        return self.nodes[self.starts[bucket]:end]


def group_buckets(band: np.ndarray, key: np.ndarray, key2: np.ndarray, node: np.ndarray) -> Buckets:
    """Sort rows by (band, key, key2, node) and keep buckets holding two or more documents
    (a document has one key per band, so a bucket never holds it twice)."""
    order = np.lexsort((node, key2, key, band))
    band, key, key2, node = band[order], key[order], key2[order], node[order]
    new = np.ones(node.size, dtype=bool)
    new[1:] = (band[1:] != band[:-1]) | (key[1:] != key[:-1]) | (key2[1:] != key2[:-1])
    bucket = np.cumsum(new) - 1
    sizes = np.bincount(bucket) if bucket.size else np.zeros(0, dtype=np.int64)
    keep = sizes[bucket] >= 2
    node, new = node[keep], new[keep]
    return Buckets(node, np.flatnonzero(new))


def star_edges(buckets: Buckets) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges (u < v): each bucket member to the bucket's smallest member."""
    if buckets.nodes.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first = np.zeros(buckets.nodes.size, dtype=bool)
    first[buckets.starts] = True
    head = buckets.nodes[buckets.starts][np.cumsum(first) - 1]
    u, v = head[~first], buckets.nodes[~first]
    return unique_edges(u, v)


def unique_edges(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique pairs of (u, v)."""
    if u.size == 0:
        return u, v
    order = np.lexsort((v, u))
    u, v = u[order], v[order]
    fresh = np.ones(u.size, dtype=bool)
    fresh[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
    return u[fresh], v[fresh]


def verified_edges(buckets: Buckets, fetch_texts: Callable[[np.ndarray], pa.Array], config: MinHashConfig,
                   threshold: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Edges whose true Jaccard similarity reaches `threshold`; also the number of pairs compared.

    Per bucket, members (ascending) join the first earlier representative they match, else become a
    representative: every kept edge is a verified pair, and a bucket whose members are all similar
    still costs k - 1 comparisons.
    """
    unique_nodes = np.unique(buckets.nodes)
    sets = shingle_sets(fetch_texts(unique_nodes), config)
    index = {int(n): i for i, n in enumerate(unique_nodes)}
    us: list[int] = []
    vs: list[int] = []
    compared = 0
    for bucket in range(buckets.starts.size):
        reps: list[int] = []
        for node in buckets.members(bucket).tolist():
            for rep in reps:
                compared += 1
                if jaccard(sets[index[rep]], sets[index[node]]) >= threshold:
                    us.append(rep)
                    vs.append(node)
                    break
            else:
                reps.append(node)
    u, v = unique_edges(np.array(us, dtype=np.int64), np.array(vs, dtype=np.int64))
    return u, v, compared
