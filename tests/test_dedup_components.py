"""Connected components (scipy fast path and distributed large-star/small-star) and the policies."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dedup.components import (LABEL_SCHEMA, components_distributed, components_in_process, components_single,
                              directed_table)
from dedup.lsh import group_buckets, star_edges
from dedup.resolve import resolve
from dedup.shuffle import read_partition, write_partitioned
from pipeline.workdir import Workdir


def hard_graph(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A long chain, a big star, a cycle, random sparse edges and self-loops over scattered node ids."""
    rng = np.random.default_rng(seed)
    n = 6000
    ids = (rng.permutation(n).astype(np.int64) * 13) + (rng.integers(0, 5, n).astype(np.int64) << 32)
    chain = (ids[:2000 - 1], ids[1:2000])
    star = (np.full(1500, ids[2500]), ids[2501:4001])
    cycle = (ids[4100:4200], np.roll(ids[4100:4200], 1))
    random = (ids[rng.integers(4300, n, 1200)], ids[rng.integers(4300, n, 1200)])
    loops = (ids[5990:], ids[5990:])
    u = np.concatenate([chain[0], star[0], cycle[0], random[0], loops[0]])
    v = np.concatenate([chain[1], star[1], cycle[1], random[1], loops[1]])
    return u, v


def scipy_reference(u: np.ndarray, v: np.ndarray) -> dict[int, int]:
    """node -> smallest node of its component, straight from scipy (nodes without a non-loop edge too)."""
    nodes = np.unique(np.concatenate([u, v]))
    iu, iv = np.searchsorted(nodes, u), np.searchsorted(nodes, v)
    _, labels = connected_components(coo_matrix((np.ones(u.size), (iu, iv)), shape=(nodes.size,) * 2), directed=False)
    smallest: dict[int, int] = {}
    for node, label in zip(nodes.tolist(), labels.tolist()):
        smallest.setdefault(label, node)
    return {node: smallest[label] for node, label in zip(nodes.tolist(), labels.tolist())}


def labels_of(workdir: Workdir, folder: str, partitions: int) -> dict[int, int]:
    table = pa.concat_tables([read_partition(workdir, folder, q, schema=LABEL_SCHEMA) for q in range(partitions)])
    nodes = table["node"].to_pylist()
    assert len(nodes) == len(set(nodes)), "a node labelled twice"
    return dict(zip(nodes, table["root"].to_pylist()))


def test_single_process_matches_scipy():
    u, v = hard_graph(0)
    nodes, roots = components_single(u, v)
    loops = u == v
    assert dict(zip(nodes.tolist(), roots.tolist())) == scipy_reference(u[~loops], v[~loops])


@pytest.mark.parametrize("seed,partitions", [(1, 1), (2, 3), (3, 8)])
def test_distributed_rounds_match_scipy(tmp_path, seed, partitions):
    u, v = hard_graph(seed)
    work = Workdir(str(tmp_path))
    table, route = directed_table(u, v, partitions)
    write_partitioned(work, work.path("edges"), "t", table, route, partitions)
    stats = components_distributed(work, work.path("edges"), work.path("scratch"), work.path("labels"), partitions)
    loops = u == v  # nodes with only a self-loop have no duplicate: neither path labels them
    assert labels_of(work, work.path("labels"), partitions) == scipy_reference(u[~loops], v[~loops])
    assert 1 <= stats["rounds"] <= 40  # a 2000-node chain with scattered ids: O(log^2 n)
    assert not work.exists(work.path("scratch", "r000-large"))  # rounds clean up after themselves
    in_process = Workdir(str(tmp_path / "single"))
    write_partitioned(in_process, in_process.path("edges"), "t", table, route, partitions)
    components_in_process(in_process, in_process.path("edges"), in_process.path("labels"), partitions)
    assert labels_of(in_process, in_process.path("labels"), partitions) == \
        labels_of(work, work.path("labels"), partitions)


def test_buckets_give_star_edges_from_the_smallest_member():
    band = np.array([0, 0, 0, 1, 1, 0, 2], dtype=np.uint16)
    key = np.array([5, 5, 5, 5, 5, 9, 5], dtype=np.uint64)
    node = np.array([30, 10, 20, 20, 40, 50, 60], dtype=np.int64)
    buckets = group_buckets(band, key, np.zeros_like(key), node)
    assert buckets.sizes.tolist() == [3, 2]
    u, v = star_edges(buckets)
    assert list(zip(u.tolist(), v.tolist())) == [(10, 20), (10, 30), (20, 40)]


def members(rows: list[tuple[int, int, str, str, int]]) -> pa.Table:
    root, node, ids, source, rank = zip(*rows)
    return pa.table({"root": list(root), "node": list(node), "id": list(ids), "source": list(source),
                     "rank": pa.array(rank, pa.int32())})


COMPONENTS = members([
    # component 1: fwe3 twice, dclm, zyda
    (1, 1, "dclm-1", "dclm", 2), (1, 2, "fwe3-9", "fwe3", 1), (1, 3, "zyda-0", "zyda", 3), (1, 4, "fwe3-5", "fwe3", 1),
    # component 7: dolma_cc and zyda
    (7, 7, "dolma_cc-3", "dolma_cc", 4), (7, 8, "zyda-4", "zyda", 3),
    # component 10: one source only
    (10, 10, "dclm-7", "dclm", 2), (10, 11, "dclm-2", "dclm", 2),
])


def decided(policy: str) -> dict[str, tuple[str, bool, str | None]]:
    table = resolve(COMPONENTS, policy)
    return {r["id"]: (r["component"], r["removed"], r["duplicate_of"]) for r in table.to_pylist()}


def test_zyda2_policy_removes_only_lower_ranked_sources():
    assert decided("zyda2") == {
        "dclm-1": ("dclm-1", True, "fwe3-5"), "fwe3-9": ("dclm-1", False, None), "zyda-0": ("dclm-1", True, "fwe3-5"),
        "fwe3-5": ("dclm-1", False, None), "dolma_cc-3": ("dolma_cc-3", True, "zyda-4"),
        "zyda-4": ("dolma_cc-3", False, None), "dclm-7": ("dclm-2", False, None), "dclm-2": ("dclm-2", False, None)}


def test_zyda1_policy_keeps_best_source_then_smallest_id():
    result = decided("zyda1")
    assert [k for k, (_, removed, _) in result.items() if not removed] == ["fwe3-5", "zyda-4", "dclm-2"]
    assert result["fwe3-9"] == ("dclm-1", True, "fwe3-5") and result["dclm-7"] == ("dclm-2", True, "dclm-2")


def test_keep_one_policy_ignores_sources():
    result = decided("keep_one")
    assert sorted(k for k, (_, removed, _) in result.items() if not removed) == ["dclm-1", "dclm-2", "dolma_cc-3"]
    assert result["fwe3-5"][2] == "dclm-1"
    with pytest.raises(ValueError, match="unknown policy"):
        resolve(COMPONENTS, "newest")
