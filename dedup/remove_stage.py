"""Stage `dedup_remove`: apply a `components` stage's decisions to the documents, partition by partition.

Kept documents go on unchanged; removed ones go to `removed/<stage>/<source>/` with `reason`
(`minhash_duplicate` or `exact_duplicate`) and `duplicate_of` (the kept id they duplicate).
Its input must be the very partitions the key stage read (node = partition ordinal and row).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from dedup.resolve import DECISION_SCHEMA
from dedup.shuffle import read_partition
from dedup.upstream import read_meta, upstream_stage
from pipeline.stage import DUPLICATE_OF_COLUMN, BatchDecision, DocumentStage, StageError, Task, TaskResult


class RemoveParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    components: str | None = Field(default=None, description="the components stage; default the nearest earlier")


class DedupRemoveStage(DocumentStage):
    type_name = "dedup_remove"
    Params = RemoveParams

    def __init__(self, ctx: Any):
        super().__init__(ctx)
        self._removed: tuple[pa.Array, pa.Array] | None = None
        self._reason = ""

    @property
    def components_stage(self) -> str:
        return upstream_stage(self.ctx, ("components",), self.params.components)

    def metas(self) -> tuple[dict[str, Any], dict[str, Any]]:
        components = read_meta(self.workdir, self.components_stage, self.stage_id)
        return components, read_meta(self.workdir, components["keys_stage"], self.stage_id)

    def ordinals(self) -> dict[str, int]:
        """Input partition (relative path) -> ordinal; refuses input the key stage did not read."""
        components, keys = self.metas()
        expected = [(p["source"], p["path"]) for p in keys["parts"]]
        actual = [(s, self.workdir.relative(p)) for s in self.ctx.sources for p in self.input_parts(s)]
        if actual != expected:
            missing = sorted(set(expected) - set(actual))[:3]
            extra = sorted(set(actual) - set(expected))[:3]
            raise StageError(
                f"stage {self.stage_id!r} must read the partitions stage {components['keys_stage']!r} "
                f"hashed (same sources {keys['sources']}, same files): missing {missing}, unexpected {extra}. "
                f"Set `sources:` to match, and put no document stage between them")
        return {path: i for i, (_, path) in enumerate(expected)}

    def validate(self) -> None:
        self.ordinals()

    def plan(self) -> list[Task]:
        ordinals = self.ordinals()
        return [Task(t.task_id, t.source, t.inputs, {"ordinal": ordinals[self.workdir.relative(t.inputs[0])]})
                for t in super().plan()]

    def run_task(self, task: Task) -> TaskResult:
        components, keys = self.metas()
        ordinal, partitions = task.params["ordinal"], components["partitions"]
        folder = self.workdir.path(self.components_stage, "decisions")
        decisions = read_partition(self.workdir, folder, ordinal % partitions, ["node", "id", "removed", "duplicate_of"],
                                   schema=DECISION_SCHEMA)
        mine = pc.and_(pc.equal(pc.shift_right(decisions["node"], 32), ordinal), decisions["removed"])
        removed = decisions.filter(mine)
        self._removed = (removed["id"].combine_chunks(), removed["duplicate_of"].combine_chunks())
        self._reason = f"{keys['kind']}_duplicate"
        result = super().run_task(task)
        dropped = sum(result.source(task.source or "").dropped.values())
        if dropped != removed.num_rows:
            raise StageError(f"stage {self.stage_id!r} task {task.task_id}: {removed.num_rows} documents were "
                             f"decided duplicates but {dropped} matched by id in {task.inputs[0]}: the input "
                             f"changed since {components['keys_stage']!r} ran")
        return result

    def report_section(self) -> str | None:
        """The dedup summary (clusters, removals by source and duplicate-of source, largest clusters)."""
        from dedup.report import dedup_summary, summary_markdown

        return summary_markdown(dedup_summary(self.workdir, self.components_stage))

    def process(self, table: pa.Table, task: Task) -> BatchDecision:
        assert self._removed is not None
        ids, duplicate_of = self._removed
        index = pc.index_in(pc.cast(table["id"], pa.string()), value_set=ids)
        hit = pc.is_valid(index)
        reasons = np.where(hit.to_numpy(zero_copy_only=False), self._reason, None)
        decision = BatchDecision.from_mask(table, reasons)
        targets = duplicate_of.take(pc.drop_null(index))
        decision.dropped = decision.dropped.append_column(DUPLICATE_OF_COLUMN, targets)
        return decision

