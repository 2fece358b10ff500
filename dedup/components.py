"""Connected components of the duplicate graph: min-label of every node, in one process or many.

Nodes are int64 (`part ordinal << 32 | row`); the label of a node is the smallest node of its
component. Two paths give the same labels:

- single process (small graphs): `scipy.sparse.csgraph.connected_components`;
- distributed (Kiveris et al., "Connected Components in MapReduce and Beyond", 2014): alternating
  large-star / small-star rounds over edge files hash-partitioned by source node. Each round is one
  task per partition that reads only its partition's directed edges, so a task's memory is set by
  its partition, not the corpus. It converges in O(log^2 n) rounds (a few on real duplicate
  graphs, ~2 log n on long chains) to a forest of stars centred on each component's minimum.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dedup.hashing import mix_partition
from dedup.shuffle import map_jobs, read_partition, write_partitioned
from pipeline.workdir import Workdir

log = logging.getLogger("zyda.dedup")

EDGE_SCHEMA = pa.schema([("u", pa.int64()), ("v", pa.int64())])
LABEL_SCHEMA = pa.schema([("node", pa.int64()), ("root", pa.int64())])


class ComponentsError(RuntimeError):
    """The distributed rounds did not converge within the allowed number of rounds."""


# ---- single process --------------------------------------------------------------------------
def components_single(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, roots) of every node with an edge (self-loops ignored, as in the distributed path),
    nodes ascending, root = smallest node of its component."""
    keep = u != v
    u, v = u[keep], v[keep]
    nodes = np.unique(np.concatenate([u, v]))
    if nodes.size == 0:
        return nodes, nodes.copy()
    iu, iv = np.searchsorted(nodes, u), np.searchsorted(nodes, v)
    graph = coo_matrix((np.ones(iu.size, dtype=np.int8), (iu, iv)), shape=(nodes.size, nodes.size))
    _, labels = connected_components(graph, directed=False)
    _, first = np.unique(labels, return_index=True)  # nodes ascending: first index = smallest node
    smallest = np.empty(first.size, dtype=np.int64)
    smallest[labels[first]] = nodes[first]
    return nodes, smallest[labels]


# ---- one partition of one round ----------------------------------------------------------------
@dataclass
class Adjacency:
    """Directed edges u -> v of one partition, unique, sorted by (u, v), grouped by u."""

    u: np.ndarray
    v: np.ndarray
    starts: np.ndarray
    """Index of each group's first edge; v[starts] is the group's smallest neighbour."""
    group: np.ndarray
    """Group number of each edge."""

    @classmethod
    def build(cls, u: np.ndarray, v: np.ndarray) -> "Adjacency":
        keep = u != v
        u, v = u[keep], v[keep]
        order = np.lexsort((v, u))
        u, v = u[order], v[order]
        if u.size:
            fresh = np.ones(u.size, dtype=bool)
            fresh[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
            u, v = u[fresh], v[fresh]
        new_group = np.ones(u.size, dtype=bool)
        new_group[1:] = u[1:] != u[:-1]
        starts = np.flatnonzero(new_group)
        return cls(u, v, starts, np.cumsum(new_group) - 1)

    @property
    def nodes(self) -> np.ndarray:
        return self.u[self.starts]

    @property
    def smallest_neighbour(self) -> np.ndarray:
        return self.v[self.starts]

    def is_star_forest(self) -> bool:
        """Every node is a centre (all neighbours larger) or a leaf (one neighbour, smaller)."""
        counts = np.diff(np.append(self.starts, self.u.size))
        centre = self.smallest_neighbour > self.nodes
        leaf = (counts == 1) & (self.smallest_neighbour < self.nodes)
        return bool(np.all(centre | leaf))

    def large_star(self) -> tuple[np.ndarray, np.ndarray]:
        """Connect every strictly larger neighbour of u to m(u) = min(u, neighbours of u)."""
        m = np.minimum(self.nodes, self.smallest_neighbour)[self.group]
        larger = self.v > self.u
        return self.v[larger], m[larger]

    def small_star(self) -> tuple[np.ndarray, np.ndarray]:
        """Connect u and its smaller neighbours to m = min(u, smaller neighbours of u)."""
        nodes, low = self.nodes, self.smallest_neighbour
        m_group = np.where(low < nodes, low, nodes)
        m = m_group[self.group]
        smaller = (self.v < self.u) & (self.v != m)
        moved = m_group != nodes
        return (np.concatenate([self.v[smaller], nodes[moved]]),
                np.concatenate([m[smaller], m_group[moved]]))

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """(node, root) of a star forest: a centre is its own root, a leaf's root is its neighbour."""
        nodes, low = self.nodes, self.smallest_neighbour
        return nodes, np.where(low < nodes, low, nodes)


def directed_table(a: np.ndarray, b: np.ndarray, partitions: int) -> tuple[pa.Table, np.ndarray]:
    """Both directions of undirected edges (a, b), and the partition of each row (by its source)."""
    u, v = np.concatenate([a, b]), np.concatenate([b, a])
    return pa.table({"u": u, "v": v}, schema=EDGE_SCHEMA), mix_partition(u, partitions)


def read_adjacency(workdir: Workdir, folder: str, partition: int) -> Adjacency:
    table = read_partition(workdir, folder, partition, schema=EDGE_SCHEMA)
    return Adjacency.build(table["u"].to_numpy(), table["v"].to_numpy())


def star_round_task(workdir: Workdir, in_folder: str, out_folder: str, partition: int, partitions: int,
                    operation: str) -> dict[str, int | bool]:
    """One partition of one round (`large` or `small` star); also says whether its input already was
    a star forest (then the driver stops and labels that input)."""
    adjacency = read_adjacency(workdir, in_folder, partition)
    a, b = adjacency.large_star() if operation == "large" else adjacency.small_star()
    table, route = directed_table(a, b, partitions)
    write_partitioned(workdir, out_folder, f"t{partition:05d}", table, route, partitions)
    return {"edges": int(adjacency.u.size), "stars": adjacency.is_star_forest()}


def label_task(workdir: Workdir, in_folder: str, out_folder: str, partition: int, partitions: int,
               route_by: str) -> int:
    """Labels of a converged partition, routed to `partitions` files by `route_by` (see `route_nodes`)."""
    nodes, roots = read_adjacency(workdir, in_folder, partition).labels()
    table = pa.table({"node": nodes, "root": roots}, schema=LABEL_SCHEMA)
    write_partitioned(workdir, out_folder, f"t{partition:05d}", table, route_nodes(nodes, roots, partitions, route_by),
                      partitions)
    return int(nodes.size)


def route_nodes(nodes: np.ndarray, roots: np.ndarray, partitions: int, route_by: str) -> np.ndarray:
    """`part`: by the input part a node belongs to (ordinal modulo partitions); `root`: by component."""
    if route_by == "part":
        return (nodes >> 32) % partitions
    return mix_partition(roots, partitions)


# ---- drivers -----------------------------------------------------------------------------------
def components_distributed(workdir: Workdir, edges_folder: str, scratch: str, labels_folder: str,
                           partitions: int, route_by: str = "part", max_rounds: int = 200) -> dict[str, Any]:
    """Large-star / small-star rounds over `edges_folder` (directed edges partitioned by source node,
    `partitions` partitions) until the graph is a star forest; write (node, root) to `labels_folder`."""
    current, rounds = edges_folder, 0
    jobs = list(range(partitions))
    while True:
        if rounds >= max_rounds:
            raise ComponentsError(f"no convergence after {max_rounds} large-star/small-star rounds; "
                                  f"raise max_rounds")
        large = posixpath.join(scratch, f"r{rounds:03d}-large")
        results = map_jobs(star_round_task, [(workdir, current, large, q, partitions, "large") for q in jobs])
        edges = sum(r["edges"] for r in results)
        converged = all(r["stars"] for r in results)
        log.info("components: round %d, %d directed edges%s", rounds, edges, ", converged" if converged else "")
        if converged:
            workdir.remove(large)
            break
        if current != edges_folder:
            workdir.remove(current)
        small = posixpath.join(scratch, f"r{rounds:03d}-small")
        map_jobs(star_round_task, [(workdir, large, small, q, partitions, "small") for q in jobs])
        workdir.remove(large)
        current = small
        rounds += 1
    nodes = sum(map_jobs(label_task, [(workdir, current, labels_folder, q, partitions, route_by) for q in jobs]))
    if current != edges_folder:
        workdir.remove(current)
    return {"rounds": rounds, "nodes": nodes, "path": "distributed"}


def components_in_process(workdir: Workdir, edges_folder: str, labels_folder: str, partitions: int,
                          route_by: str = "part") -> dict[str, Any]:
    """The fast path: read every edge partition, label with scipy, write labels like the distributed path."""
    tables = [read_partition(workdir, edges_folder, q, schema=EDGE_SCHEMA) for q in range(partitions)]
    edges = pa.concat_tables(tables)
    nodes, roots = components_single(edges["u"].to_numpy(), edges["v"].to_numpy())
    table = pa.table({"node": nodes, "root": roots}, schema=LABEL_SCHEMA)
    write_partitioned(workdir, labels_folder, "single", table, route_nodes(nodes, roots, partitions, route_by),
                      partitions)
    return {"rounds": 0, "nodes": int(nodes.size), "path": "in_process"}
