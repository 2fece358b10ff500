"""Stage `lsh`: one task per key-range partition groups equal band keys into candidate edges.

Reads `<keys stage>/keys/p<q>/` (every band's keys in that range), checks the ids routed to the
same partition are unique, and writes candidate (or, with `verify`, Jaccard-verified) edges in
both directions to `<stage>/edges/p<r>/`, partitioned by source node for the `components` rounds.
"""

from __future__ import annotations

import logging
import posixpath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from dedup.components import directed_table
from dedup.config import MinHashConfig
from dedup.keys_stage import ID_SCHEMA, KEY_SCHEMA
from dedup.lsh import group_buckets, star_edges, verified_edges
from dedup.shuffle import partition_dirs, read_partition, write_partitioned
from dedup.upstream import KEY_STAGE_TYPES, fetch_texts, node_location, read_meta, upstream_stage, write_meta
from pipeline.stage import Stage, StageError, Task, TaskResult

log = logging.getLogger("zyda.dedup")


class LshParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: str | None = Field(default=None, description="the minhash / exact_hash stage; default the nearest earlier")
    verify: bool = Field(default=False, description="keep only candidate pairs whose true Jaccard >= threshold")
    threshold: float | None = Field(default=None, gt=0, le=1, description="default: the S-curve's 50% point")
    edge_partitions: int | None = Field(default=None, ge=1, le=65536, description="default: the key partitions")


class LshStage(Stage):
    type_name = "lsh"
    Params = LshParams
    produces_documents = False

    @property
    def key_stage(self) -> str:
        return upstream_stage(self.ctx, KEY_STAGE_TYPES, self.params.keys)

    def key_meta(self) -> dict[str, Any]:
        return read_meta(self.workdir, self.key_stage, self.stage_id)

    @property
    def edge_partitions(self) -> int:
        return self.params.edge_partitions or self.key_meta()["partitions"]

    @property
    def edges_dir(self) -> str:
        return posixpath.join(self.workdir.stage_dir(self.stage_id), "edges")

    def validate(self) -> None:
        meta = self.key_meta()
        if self.params.verify and meta["kind"] != "minhash":
            raise StageError(f"stage {self.stage_id!r}: verify needs shingles, and {self.key_stage!r} is an "
                             f"{meta['kind']} stage (its 122-bit keys need no verification)")
        if self.params.verify:
            log.info("%s: verifying candidates at Jaccard >= %.3f", self.stage_id, self.threshold(meta))

    def threshold(self, meta: dict[str, Any]) -> float:
        return self.params.threshold if self.params.threshold is not None else meta["settings"]["threshold"]

    def plan(self) -> list[Task]:
        return [Task(task_id=f"p{q:05d}", params={"partition": q}) for q in range(self.key_meta()["partitions"])]

    def output_folders(self, task: Task) -> list[str]:
        return partition_dirs(self.edges_dir, self.edge_partitions)

    def run_task(self, task: Task) -> TaskResult:
        meta, q = self.key_meta(), task.params["partition"]
        key_root = self.workdir.stage_dir(self.key_stage)
        check_unique_ids(read_partition(self.workdir, posixpath.join(key_root, "ids"), q, schema=ID_SCHEMA), meta)
        keys = read_partition(self.workdir, posixpath.join(key_root, "keys"), q, schema=KEY_SCHEMA)
        buckets = group_buckets(keys["band"].to_numpy(), keys["key"].to_numpy(), keys["key2"].to_numpy(),
                                keys["node"].to_numpy())
        del keys
        u, v = star_edges(buckets)
        extra: dict[str, Any] = {"buckets": int(buckets.starts.size), "candidates": int(u.size),
                                 "largest_bucket": int(buckets.sizes.max(initial=0))}
        if self.params.verify:
            config = MinHashConfig(**meta["settings"]["minhash"])
            u, v, compared = verified_edges(buckets, lambda nodes: fetch_texts(self.workdir, meta, nodes), config,
                                            self.threshold(meta))
            extra["compared"] = compared
        table, route = directed_table(u, v, self.edge_partitions)
        write_partitioned(self.workdir, self.edges_dir, task.task_id, table, route, self.edge_partitions)
        extra["edges"] = int(u.size)
        return TaskResult(extra=extra)

    def finalize(self, results: dict[str, TaskResult]) -> None:
        totals = {k: sum(r.extra.get(k, 0) for r in results.values()) for k in ("buckets", "candidates", "edges")}
        largest = max((r.extra.get("largest_bucket", 0) for r in results.values()), default=0)
        log.info("%s: %d buckets with duplicates, %d candidate edges, %d edges kept, largest bucket %d",
                 self.stage_id, totals["buckets"], totals["candidates"], totals["edges"], largest)
        write_meta(self.workdir, self.stage_id, {"keys_stage": self.key_stage, "partitions": self.edge_partitions,
                                                 "largest_bucket": largest, **totals})


def check_unique_ids(ids: pa.Table, meta: dict[str, Any]) -> None:
    """Ids with the same hash land in the same partition: any id seen twice is reported with both places."""
    if ids.num_rows == 0:
        return
    counts = ids.group_by("id").aggregate([("node", "count")])
    repeated = counts.filter(pc.greater(counts["node_count"], 1))
    if repeated.num_rows == 0:
        return
    first = repeated["id"][0].as_py()
    nodes = ids.filter(pc.equal(ids["id"], first))["node"].to_pylist()
    places = "; ".join(node_location(meta, n) for n in sorted(nodes)[:3])
    raise StageError(f"duplicate document id {first!r} ({repeated.num_rows} ids repeated in this partition alone): "
                     f"found at {places}. Ids must be unique: fix the source or its ingest")
