"""Stage `components`: connected components of the `lsh` edges, then the resolution policy.

One planned task drives rounds of partition jobs (Ray tasks when Ray is up, in-process otherwise);
no job holds more than its partition:
1. labels: node -> smallest node of its component (scipy in one process for small graphs, else
   large-star / small-star rounds), routed by the node's input partition;
2. join: each partition group reads the `id` column of its own input files and routes
   (root, node, id, source, rank) by component;
3. resolve: each component partition applies the policy and routes one decision per member to
   `<stage>/decisions/p<q>/`, by input partition, for `dedup_remove`.
The number of rounds is data dependent, which is why this is one task that runs jobs rather than a
fixed task list; a retry redoes the stage from its (finished) input.
"""

from __future__ import annotations

import logging
import posixpath
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from dedup.components import LABEL_SCHEMA, components_distributed, components_in_process
from dedup.hashing import mix_partition
from dedup.resolve import MEMBER_SCHEMA, Policy, resolve
from dedup.shuffle import map_jobs, read_partition, write_partitioned
from dedup.upstream import read_meta, upstream_stage, write_meta
from pipeline.stage import Stage, Task, TaskResult
from pipeline.workdir import Workdir

log = logging.getLogger("zyda.dedup")


class ComponentsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    edges: str | None = Field(default=None, description="the lsh stage; default the nearest earlier one")
    policy: Policy = Field(default="zyda2", description="zyda2 (cross-source only), zyda1 or keep_one")
    max_edges_in_process: int = Field(default=2_000_000, ge=0,
                                      description="graphs up to this many edges are labelled in one process")
    max_rounds: int = Field(default=200, ge=1)


class ComponentsStage(Stage):
    type_name = "components"
    Params = ComponentsParams
    produces_documents = False

    @property
    def lsh_stage(self) -> str:
        return upstream_stage(self.ctx, ("lsh",), self.params.edges)

    def metas(self) -> tuple[dict[str, Any], dict[str, Any]]:
        lsh = read_meta(self.workdir, self.lsh_stage, self.stage_id)
        return lsh, read_meta(self.workdir, lsh["keys_stage"], self.stage_id)

    def validate(self) -> None:
        self.metas()

    def plan(self) -> list[Task]:
        return [Task(task_id="all")]

    def output_folders(self, task: Task) -> list[str]:
        return []

    def folder(self, name: str) -> str:
        return posixpath.join(self.workdir.stage_dir(self.stage_id), name)

    def run_task(self, task: Task) -> TaskResult:
        workdir, (lsh, keys) = self.workdir, self.metas()
        partitions = lsh["partitions"]
        scratch, decisions = self.folder("_scratch"), self.folder("decisions")
        workdir.remove(scratch)
        workdir.remove(decisions)
        edges = posixpath.join(workdir.stage_dir(self.lsh_stage), "edges")
        labels = posixpath.join(scratch, "labels")
        if lsh["edges"] <= self.params.max_edges_in_process:
            stats = components_in_process(workdir, edges, labels, partitions)
        else:
            stats = components_distributed(workdir, edges, posixpath.join(scratch, "rounds"), labels, partitions,
                                           max_rounds=self.params.max_rounds)
        ranks = self.ctx.recipe.source_rank()
        members = posixpath.join(scratch, "members")
        jobs = [(workdir, labels, members, g, partitions, keys["parts"], ranks) for g in range(partitions)]
        map_jobs(join_task, jobs)
        results = map_jobs(resolve_task, [(workdir, members, decisions, q, partitions, self.params.policy)
                                          for q in range(partitions)])
        workdir.remove(scratch)
        removed: Counter[str] = Counter()
        for result in results:
            removed.update(result["removed"])
        extra = {**stats, "components": sum(r["components"] for r in results), "removed": dict(sorted(removed.items()))}
        log.info("%s: %d documents with duplicates in %d components (%s, %d rounds); policy %s removes %s",
                 self.stage_id, stats["nodes"], extra["components"], extra["path"], stats["rounds"],
                 self.params.policy, extra["removed"] or "nothing")
        return TaskResult(extra=extra)

    def finalize(self, results: dict[str, TaskResult]) -> None:
        lsh, keys = self.metas()
        extra = results["all"].extra
        write_meta(self.workdir, self.stage_id, {
            "kind": keys["kind"], "keys_stage": lsh["keys_stage"], "lsh_stage": self.lsh_stage,
            "policy": self.params.policy, "partitions": lsh["partitions"], "nodes": extra["nodes"],
            "components": extra["components"], "removed": extra["removed"], "rounds": extra["rounds"]})


def join_task(workdir: Workdir, labels: str, out: str, group: int, partitions: int, parts: list[dict[str, Any]],
              ranks: dict[str, int]) -> int:
    """Attach id, source and rank to the labelled nodes of input partitions `ordinal % partitions == group`."""
    table = read_partition(workdir, labels, group, schema=LABEL_SCHEMA)
    if table.num_rows == 0:
        return 0
    table = table.sort_by("node")
    nodes, roots = table["node"].to_numpy(), table["root"].to_numpy()
    ordinals = nodes >> 32
    pieces = []
    for ordinal in np.unique(ordinals):
        mask = ordinals == ordinal
        part = parts[int(ordinal)]
        ids = workdir.read_table(workdir.path(part["path"]), ["id"])["id"]
        rows = pa.array((nodes[mask] & 0xFFFFFFFF).astype(np.int64))
        count = int(mask.sum())
        pieces.append(pa.table({
            "root": roots[mask], "node": nodes[mask], "id": pc.cast(ids.take(rows), pa.string()),
            "source": pa.array([part["source"]] * count, pa.string()),
            "rank": pa.array(np.full(count, ranks[part["source"]], dtype=np.int32))}, schema=MEMBER_SCHEMA))
    members = pa.concat_tables(pieces)
    write_partitioned(workdir, out, f"t{group:05d}", members, mix_partition(members["root"].to_numpy(), partitions),
                      partitions)
    return members.num_rows


def resolve_task(workdir: Workdir, members: str, out: str, partition: int, partitions: int,
                 policy: Policy) -> dict[str, Any]:
    """Apply `policy` to the components routed to `partition`; route decisions by input partition."""
    decided = resolve(read_partition(workdir, members, partition, schema=MEMBER_SCHEMA), policy)
    nodes = decided["node"].to_numpy()
    write_partitioned(workdir, out, f"t{partition:05d}", decided, (nodes >> 32) % partitions, partitions)
    removed = decided.filter(decided["removed"])
    return {"components": int(pc.count_distinct(decided["component"]).as_py()) if decided.num_rows else 0,
            "removed": {r["values"]: r["counts"] for r in pc.value_counts(removed["source"]).to_pylist()}}
