"""The ingest stage: upstream files -> the data model (`id`, `text`, `source`, `meta`), one task per file.

Ids are `<component>-<file index:05d>-<record index:07d>`: unique across sources, stable across
reruns, and they point straight back to the upstream record.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.readers import DECLARED_TYPES, BadRecord, RawBatch, list_files, read_file
from pipeline.stage import REASON_COLUMN, Stage, Task, TaskResult, text_bytes

DOCUMENT_SCHEMA_HEAD = ["id", "text", "source", "meta"]
BAD_RECORD_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("row", pa.int64()),
                               (REASON_COLUMN, pa.string()), ("detail", pa.string()), ("raw", pa.string())])


def document_ids(component: str, shard: int, rows: pa.Array) -> pa.Array:
    """Vectorized `<component>-<shard:05d>-<row:07d>`."""
    digits = pc.utf8_lpad(pc.cast(rows, pa.string()), width=7, padding="0")
    return pc.binary_join_element_wise(pa.scalar(f"{component}-{shard:05d}"), digits, "-")


class IngestStage(Stage):
    """Reads every file of every source and writes normalized, bounded zstd Parquet partitions."""

    type_name = "ingest"

    def plan(self) -> list[Task]:
        tasks = []
        for component in self.ctx.sources:
            source = self.ctx.recipe.sources[component]
            files = list_files(source, self.ctx.recipe.max_files.get(component))
            for shard, url in enumerate(files):
                tasks.append(Task(task_id=f"{component}-{shard:05d}", source=component, inputs=(url,),
                                  params={"shard": shard}))
        return tasks

    def run_task(self, task: Task) -> TaskResult:
        assert task.source is not None
        source = self.ctx.recipe.sources[task.source]
        shard = task.params["shard"]
        workdir, result = self.workdir, TaskResult()
        stats = result.source(task.source)
        kept, rejected = self.part_writers(task)
        skip_bad = self.ctx.on_bad_record == "skip"
        for raw in read_file(task.inputs[0], source, self.ctx.batch_size, skip_bad):
            stats.docs_in += len(raw.rows) + len(raw.bad)
            if len(raw.rows):
                table = self._normalize(raw, task.source, shard)
                stats.docs_out += table.num_rows
                stats.bytes_out += text_bytes(table)
                kept.write(table)
            if raw.bad:
                for record in raw.bad:
                    stats.add_dropped(f"bad_record:{record.reason}")
                rejected.write(self._bad_table(raw.bad, task.source, shard))
        result.outputs = [workdir.relative(p) for p in kept.close() + rejected.close()]
        return result

    def _normalize(self, raw: RawBatch, component: str, shard: int) -> pa.Table:
        source = self.ctx.recipe.sources[component]
        n = len(raw.rows)
        names = list(source.keep_columns)
        if names:
            meta = pa.StructArray.from_arrays([_as_declared(raw.columns[c], source.keep_columns[c]) for c in names],
                                              names=names)
        else:
            meta = pa.nulls(n, pa.struct([]))
        return pa.table({"id": document_ids(component, shard, raw.rows), "text": raw.text,
                         "source": pa.array([component] * n, pa.string()), "meta": meta})

    @staticmethod
    def _bad_table(bad: list[BadRecord], component: str, shard: int) -> pa.Table:
        ids = [f"{component}-{shard:05d}-{r.row:07d}" if r.row >= 0 else f"{component}-{shard:05d}-rest"
               for r in bad]
        return pa.table({"id": ids, "source": [component] * len(bad), "row": [r.row for r in bad],
                         REASON_COLUMN: [f"bad_record:{r.reason}" for r in bad], "detail": [r.detail for r in bad],
                         "raw": [r.raw for r in bad]}, schema=BAD_RECORD_SCHEMA)


def _as_declared(array: pa.Array, kind: str) -> pa.Array:
    """Cast a kept column to the manifest's type so every file of a source shares one schema."""
    if kind == "auto":
        return array
    return array if array.type == DECLARED_TYPES[kind] else array.cast(DECLARED_TYPES[kind])
