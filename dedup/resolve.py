"""Which documents of a duplicate component are removed, and which kept document each one duplicates.

Policies (source rank 1 is the best source):
- `zyda2`: only cross-source duplicates go: every document whose source ranks below the best source
  present in its component is removed; documents of the best source are all kept.
- `zyda1`: one document per component survives: best source, then smallest id.
- `keep_one`: the smallest id survives, whatever the source.

In every policy the kept "representative" of a component is its smallest (rank, id) document
(smallest id for `keep_one`); removed documents name it in `duplicate_of`. `component` is the
smallest id of the component.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Policy = Literal["zyda2", "zyda1", "keep_one"]
POLICIES: tuple[str, ...] = ("zyda2", "zyda1", "keep_one")

MEMBER_SCHEMA = pa.schema([("root", pa.int64()), ("node", pa.int64()), ("id", pa.string()),
                           ("source", pa.string()), ("rank", pa.int32())])
DECISION_SCHEMA = pa.schema([("node", pa.int64()), ("id", pa.string()), ("source", pa.string()),
                             ("component", pa.string()), ("component_size", pa.int64()), ("removed", pa.bool_()),
                             ("duplicate_of", pa.string()), ("duplicate_of_source", pa.string())])


def _first_of_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by `keys`: index of each group's first row, and each row's group number."""
    new = np.ones(keys.size, dtype=bool)
    new[1:] = keys[1:] != keys[:-1]
    return np.flatnonzero(new), np.cumsum(new) - 1


def resolve(members: pa.Table, policy: Policy) -> pa.Table:
    """Decide every member of the components in `members` (root, node, id, rank): one row each."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: use one of {POLICIES}")
    if members.num_rows == 0:
        return DECISION_SCHEMA.empty_table()
    by_id = members.sort_by([("root", "ascending"), ("id", "ascending")])
    roots = by_id["root"].to_numpy()
    first, group = _first_of_groups(roots)
    ids = by_id["id"]
    component = ids.take(pa.array(first[group]))
    sizes = np.diff(np.append(first, roots.size))[group]
    if policy == "keep_one":
        rep_row = first[group]
        ranks = np.zeros(roots.size, dtype=np.int32)
        best_rank = ranks
    else:
        # Within each root, order by (rank, id); rows are already by id, so a stable sort by rank keeps ids ordered.
        ranks = by_id["rank"].to_numpy()
        order = np.lexsort((np.arange(roots.size), ranks, roots))
        rep_first = order[first]  # (rank, id)-smallest row of each component
        rep_row = rep_first[group]
        best_rank = ranks[rep_row]
    if policy == "zyda2":
        removed = ranks > best_rank
    else:
        removed = np.arange(roots.size) != rep_row
    null = pa.scalar(None, pa.string())
    removed_mask = pa.array(removed)
    rep = pa.array(rep_row)
    table = pa.table({"node": by_id["node"], "id": ids, "source": by_id["source"], "component": component,
                      "component_size": pa.array(sizes, pa.int64()), "removed": removed_mask,
                      "duplicate_of": pc.if_else(removed_mask, ids.take(rep), null),
                      "duplicate_of_source": pc.if_else(removed_mask, by_id["source"].take(rep), null)},
                     schema=DECISION_SCHEMA)
    return table.sort_by("node")
