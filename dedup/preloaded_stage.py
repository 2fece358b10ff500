"""Stage `preloaded`: documents a caller already wrote to WORKDIR/<stage id>/<source>/*.parquet.

`dedup.fuzzy_dedup` writes an in-memory table there and runs the recipe stages after it, so the
library call and `zyda run` share every line of the dedup implementation.
"""

from __future__ import annotations

import pyarrow.parquet as pq

from pipeline.stage import Stage, StageError, Task, TaskResult

REQUIRED_COLUMNS = ("id", "text", "source")


class PreloadedStage(Stage):
    type_name = "preloaded"

    def plan(self) -> list[Task]:
        return [Task(task_id=source, source=source) for source in self.ctx.sources]

    def output_folders(self, task: Task) -> list[str]:
        return []  # the documents are the caller's: a retry must never delete them

    def run_task(self, task: Task) -> TaskResult:
        assert task.source is not None
        result = TaskResult()
        stats = result.source(task.source)
        parts = self.workdir.parts(self.workdir.stage_dir(self.stage_id, task.source))
        for path in parts:
            with self.workdir.fs.open(path, "rb") as handle:
                metadata = pq.ParquetFile(handle).metadata
                missing = [c for c in REQUIRED_COLUMNS if c not in metadata.schema.names]
                if missing:
                    raise StageError(f"{path}: missing columns {missing}")
                stats.docs_in += metadata.num_rows
        stats.docs_out = stats.docs_in
        result.outputs = [self.workdir.relative(p) for p in parts]
        return result
