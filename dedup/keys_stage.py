"""Stages `minhash` and `exact_hash`: per input partition, the bucket keys of every document.

A document is node `ordinal << 32 | row` (ordinal: its input partition's number in this stage's
listing). Each task writes `(band, key, key2, node)` rows routed by key range to
`<stage>/keys/p<q>/` and `(id, node)` rows routed by id hash to `<stage>/ids/p<q>/` (where the
`lsh` stage checks ids are unique). Neither signatures nor texts stay in memory past a batch.

- `minhash`: one key per LSH band (the hash of that band's `rows` MinHash values).
- `exact_hash`: one 122-bit key (`key`, `key2`) of the (optionally normalized) text.
"""

from __future__ import annotations

import logging
import posixpath
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from dedup.config import MinHashConfig, MinHashSettings, log_curve
from dedup.hashing import mix_partition
from dedup.normalize import Normalization
from dedup.shuffle import partition_dirs, write_partitioned
from dedup.signatures import compute_signatures, exact_keys
from dedup.upstream import write_meta
from pipeline.stage import Stage, StageError, Task, TaskResult

log = logging.getLogger("zyda.dedup")

KEY_SCHEMA = pa.schema([("band", pa.uint16()), ("key", pa.uint64()), ("key2", pa.uint64()), ("node", pa.int64())])
ID_SCHEMA = pa.schema([("id", pa.string()), ("node", pa.int64())])
MAX_ROWS_PER_PART = 2**32


def key_partition(keys: np.ndarray, partitions: int) -> np.ndarray:
    """Keys are uniform 64-bit hashes: their top 32 bits pick the range."""
    return ((keys >> np.uint64(32)) * np.uint64(partitions) >> np.uint64(32)).astype(np.int64)


def id_hashes(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return exact_keys(ids, "none", seed=0)[:, 0]


class KeyStage(Stage):
    """Shared plan / task / finalize of the two key stages; subclasses compute the keys of a batch."""

    produces_documents = False
    kind: ClassVar[str] = ""
    columns: ClassVar[list[str]] = ["id", "text"]

    def keys(self, texts: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        """(documents, bands) key and key2 arrays."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def partitions(self) -> int:
        return self.params.partitions  # type: ignore[attr-defined]

    def parts(self) -> list[tuple[str, str]]:
        """(source, path) of every input partition, in ordinal order."""
        return [(source, path) for source in self.ctx.sources for path in self.input_parts(source)]

    def plan(self) -> list[Task]:
        tasks, counters = [], {}
        for ordinal, (source, path) in enumerate(self.parts()):
            index = counters[source] = counters.get(source, -1) + 1
            tasks.append(Task(task_id=f"{source}-{index:05d}", source=source, inputs=(path,),
                              params={"ordinal": ordinal}))
        return tasks

    def output_folders(self, task: Task) -> list[str]:
        return (partition_dirs(self.keys_dir, self.partitions) +
                partition_dirs(self.ids_dir, self.partitions))

    @property
    def keys_dir(self) -> str:
        return posixpath.join(self.workdir.stage_dir(self.stage_id), "keys")

    @property
    def ids_dir(self) -> str:
        return posixpath.join(self.workdir.stage_dir(self.stage_id), "ids")

    def run_task(self, task: Task) -> TaskResult:
        assert task.source is not None
        result = TaskResult()
        stats = result.source(task.source)
        key_tables, id_tables, row = [], [], 0
        for batch in self.workdir.iter_batches(task.inputs[0], self.ctx.batch_size, self.columns):
            ids, texts = batch.column("id"), batch.column("text")
            if ids.null_count:
                raise StageError(f"{task.inputs[0]}: {ids.null_count} documents have no id")
            nodes = (np.int64(task.params["ordinal"]) << np.int64(32)) + np.arange(row, row + batch.num_rows,
                                                                                    dtype=np.int64)
            key, key2 = self.keys(pa.chunked_array([texts]))
            bands = key.shape[1]
            key_tables.append(pa.table({
                "band": np.tile(np.arange(bands, dtype=np.uint16), batch.num_rows),
                "key": key.reshape(-1), "key2": key2.reshape(-1), "node": np.repeat(nodes, bands)},
                schema=KEY_SCHEMA))
            id_tables.append(pa.table({"id": pc.cast(ids, pa.string()), "node": nodes}, schema=ID_SCHEMA))
            row += batch.num_rows
        if row >= MAX_ROWS_PER_PART:
            raise StageError(f"{task.inputs[0]} has {row} rows; dedup needs partitions under 2^32 rows")
        keys = pa.concat_tables(key_tables) if key_tables else KEY_SCHEMA.empty_table()
        ids = pa.concat_tables(id_tables) if id_tables else ID_SCHEMA.empty_table()
        write_partitioned(self.workdir, self.keys_dir, task.task_id, keys,
                          key_partition(keys["key"].to_numpy(), self.partitions), self.partitions)
        write_partitioned(self.workdir, self.ids_dir, task.task_id, ids,
                          mix_partition(id_hashes(ids["id"]).view(np.int64), self.partitions), self.partitions)
        stats.docs_in = stats.docs_out = row
        result.extra = {"documents": row, "keys": keys.num_rows}
        return result

    def finalize(self, results: dict[str, TaskResult]) -> None:
        parts = [{"ordinal": i, "source": s, "path": self.workdir.relative(p)} for i, (s, p) in enumerate(self.parts())]
        write_meta(self.workdir, self.stage_id, {
            "kind": self.kind, "partitions": self.partitions, "sources": self.ctx.sources, "parts": parts,
            "documents": sum(r.extra.get("documents", 0) for r in results.values()), "settings": self.settings()})


class MinHashParams(MinHashSettings):
    partitions: int = Field(default=16, ge=1, le=65536, description="key-range partitions (= lsh tasks)")


class MinHashStage(KeyStage):
    """MinHash signatures -> one key per band, routed by key range for the `lsh` stage."""

    type_name = "minhash"
    kind = "minhash"
    Params = MinHashParams

    @property
    def config(self) -> MinHashConfig:
        return self.params.resolved(self.ctx.recipe.recipe.seed)

    def validate(self) -> None:
        config = self.config
        log.info("%s: %s", self.stage_id, config.describe())
        log.info("%s: S-curve %s", self.stage_id, log_curve(config.bands, config.rows))

    def keys(self, texts: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        keys = compute_signatures(texts, self.config).keys
        return keys, np.zeros_like(keys)

    def settings(self) -> dict[str, Any]:
        return {"minhash": self.config.to_json(), "threshold": self.config.threshold()}


class ExactParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    normalize: Normalization = Field(default="none", description="none: byte-identical texts; simple; zyda1")
    partitions: int = Field(default=16, ge=1, le=65536)
    seed: int | None = None


class ExactHashStage(KeyStage):
    """A 122-bit hash of each (optionally normalized) text: exact duplicates share one bucket."""

    type_name = "exact_hash"
    kind = "exact"
    Params = ExactParams

    def keys(self, texts: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        seed = self.params.seed if self.params.seed is not None else self.ctx.recipe.recipe.seed
        keys = exact_keys(texts, self.params.normalize, seed)
        return keys[:, :1], keys[:, 1:]

    def settings(self) -> dict[str, Any]:
        return {"normalize": self.params.normalize}

