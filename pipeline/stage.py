"""The stage abstraction: a stage plans independent tasks; a task reads Parquet and writes Parquet.

Two shapes cover the recipes:
- `Stage`: any list of tasks with a `finalize` step on the driver (dedup's all-to-all phases).
- `DocumentStage`: one task per document partition of its input; a subclass decides, batch by
  batch, which rows are kept (possibly with new columns) and why the others are dropped. The
  base class does the reading, bounded atomic writing, `removed/` bookkeeping and accounting.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from pipeline.workdir import Workdir

if TYPE_CHECKING:
    from pipeline.manifest import LoadedRecipe, StageSpec

REASON_COLUMN = "reason"
DUPLICATE_OF_COLUMN = "duplicate_of"


class AccountingError(RuntimeError):
    """docs_in != docs_out + dropped for some task and source: a stage lost or invented documents."""


class StageError(RuntimeError):
    """A stage cannot run (bad configuration, missing model, unfinished input); said before any task."""


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class SourceStats:
    docs_in: int = 0
    docs_out: int = 0
    bytes_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def add_dropped(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    def merge(self, other: "SourceStats") -> None:
        self.docs_in += other.docs_in
        self.docs_out += other.docs_out
        self.bytes_out += other.bytes_out
        for reason, count in other.dropped.items():
            self.add_dropped(reason, count)

    def check(self, where: str) -> None:
        dropped = sum(self.dropped.values())
        if self.docs_in != self.docs_out + dropped:
            raise AccountingError(
                f"{where}: docs_in={self.docs_in} != docs_out={self.docs_out} + dropped={dropped} {self.dropped}")

    def to_json(self) -> dict[str, Any]:
        return {"docs_in": self.docs_in, "docs_out": self.docs_out, "bytes_out": self.bytes_out,
                "dropped": dict(sorted(self.dropped.items()))}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SourceStats":
        return cls(data["docs_in"], data["docs_out"], data.get("bytes_out", 0), dict(data.get("dropped", {})))


@dataclass(frozen=True)
class Task:
    """One independent unit of work. `task_id` is unique in its stage and safe in file names."""

    task_id: str
    source: str | None = None
    inputs: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskResult:
    stats: dict[str, SourceStats] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    """Stage-specific counters (edges emitted, tokens written...), kept in the task marker."""

    def source(self, name: str) -> SourceStats:
        return self.stats.setdefault(name, SourceStats())

    def to_json(self) -> dict[str, Any]:
        return {"stats": {k: v.to_json() for k, v in sorted(self.stats.items())},
                "outputs": self.outputs, "extra": self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TaskResult":
        return cls({k: SourceStats.from_json(v) for k, v in data["stats"].items()},
                   list(data.get("outputs", [])), dict(data.get("extra", {})))


@dataclass
class StageContext:
    """What a stage knows about its run: the recipe, its own spec, the workdir and its input."""

    recipe: "LoadedRecipe"
    spec: "StageSpec"
    workdir: Workdir
    input_stage: str | None
    upstream_hash: str = ""
    on_bad_record: str = "fail"

    @property
    def batch_size(self) -> int:
        return self.recipe.recipe.execution.batch_size

    @property
    def target_part_bytes(self) -> int:
        return self.recipe.recipe.execution.target_part_bytes

    @property
    def sources(self) -> list[str]:
        return self.spec.sources or self.recipe.components


class Stage:
    """Base class of every recipe stage. Subclasses set `type_name` and `Params` and register."""

    type_name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    produces_documents: ClassVar[bool] = True
    """Whether outputs are document partitions that later stages read as input."""
    uses_actors: ClassVar[bool] = False
    """Run tasks on a pool of Ray actors that call `setup()` once (models), instead of plain tasks."""

    def __init__(self, ctx: StageContext):
        self.ctx = ctx
        self.params = self.Params.model_validate(ctx.spec.params)
        self._is_setup = False

    # ---- identity ----------------------------------------------------------------------------
    @property
    def stage_id(self) -> str:
        return self.ctx.spec.id

    @property
    def workdir(self) -> Workdir:
        return self.ctx.workdir

    def config_hash(self) -> str:
        """Hash of everything that decides this stage's output, chained with its input's hash."""
        payload = {"type": self.type_name, "params": self.params.model_dump(mode="json"),
                   "sources": {s: self.ctx.recipe.sources[s].model_dump(mode="json") for s in self.ctx.sources},
                   "seed": self.ctx.recipe.recipe.seed, "upstream": self.ctx.upstream_hash,
                   "extra": self.hash_extra()}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def hash_extra(self) -> Any:
        """Further inputs of the config hash (e.g. a model file's sha256)."""
        return None

    # ---- life cycle --------------------------------------------------------------------------
    def validate(self) -> None:
        """Fail fast on the driver before any task starts (missing model, unknown label...)."""

    def plan(self) -> list[Task]:
        raise NotImplementedError

    def setup(self) -> None:
        """Load expensive state once per worker process or actor (models, word lists)."""

    def ensure_setup(self) -> None:
        if not self._is_setup:
            self.setup()
            self._is_setup = True

    def run_task(self, task: Task) -> TaskResult:
        raise NotImplementedError

    def finalize(self, results: dict[str, TaskResult]) -> None:
        """Runs on the driver once every task is done (e.g. merge partition summaries)."""

    def resources(self) -> dict[str, float]:
        return {"num_cpus": 1}

    def part_writers(self, task: Task) -> tuple["PartWriter", "PartWriter"]:
        """Bounded writers for a task's kept documents and for its `removed/` documents."""
        assert task.source is not None
        workdir, target = self.workdir, self.ctx.target_part_bytes
        return (PartWriter(workdir, workdir.stage_dir(self.stage_id, task.source), task.task_id, target),
                PartWriter(workdir, workdir.removed_dir(self.stage_id, task.source), task.task_id, target))

    def report_section(self) -> str | None:
        """Markdown this stage adds to the run report, read from its finished outputs."""
        return None

    def output_folders(self, task: Task) -> list[str]:
        """Folders a task writes `part-<task_id>-*` files into; cleared before a retry."""
        sources = [task.source] if task.source else self.ctx.sources
        return [self.workdir.stage_dir(self.stage_id, s) for s in sources] + \
               [self.workdir.removed_dir(self.stage_id, s) for s in sources]

    # ---- helpers -----------------------------------------------------------------------------
    def input_parts(self, source: str) -> list[str]:
        """Document partitions of `source` as of this stage's input (nearest stage that wrote it)."""
        from pipeline.lineage import document_parts

        return document_parts(self.ctx.recipe, self.workdir, self.ctx.input_stage, source)


def text_bytes(table: pa.Table) -> int:
    """UTF-8 bytes of the `text` column (0 when there is none): what reports count as size."""
    if "text" not in table.column_names or table.num_rows == 0:
        return 0
    return int(pc.sum(pc.binary_length(table["text"])).as_py() or 0)


class PartWriter:
    """Writes rows into `part-<task>-<k>.parquet` files of bounded size, each one atomically."""

    def __init__(self, workdir: Workdir, folder: str, task_id: str, target_bytes: int):
        self.workdir, self.folder, self.task_id, self.target_bytes = workdir, folder, task_id, target_bytes
        self._pending: list[pa.Table] = []
        self._pending_bytes = 0
        self.paths: list[str] = []
        self.rows = 0
        self.bytes = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self._pending.append(table)
        self._pending_bytes += table.nbytes
        self.rows += table.num_rows
        if self._pending_bytes >= self.target_bytes:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending, promote_options="default")
        path = posixpath.join(self.folder, f"part-{self.task_id}-{len(self.paths):04d}.parquet")
        self.workdir.write_table_atomic(path, table)
        self.paths.append(path)
        self.bytes += self._pending_bytes
        self._pending, self._pending_bytes = [], 0

    def close(self) -> list[str]:
        self.flush()
        return self.paths


@dataclass
class BatchDecision:
    """What a `DocumentStage` made of one batch: the rows kept and the rows dropped, with reasons."""

    kept: pa.Table
    dropped: pa.Table
    """Same columns as `kept` plus `reason` (and `duplicate_of` where it applies)."""

    @classmethod
    def from_mask(cls, table: pa.Table, reasons: list[str | None] | np.ndarray) -> "BatchDecision":
        """Split `table`: rows whose reason is None are kept, the others dropped with that reason."""
        reason_array = pa.array(reasons, type=pa.string())
        keep_mask = pc.is_null(reason_array)
        kept = table.filter(keep_mask)
        dropped = table.filter(pc.invert(keep_mask)).append_column(
            REASON_COLUMN, reason_array.filter(pc.invert(keep_mask)))
        return cls(kept, dropped)


class DocumentStage(Stage):
    """A per-document stage: one task per input partition; subclasses implement `process`."""

    columns: ClassVar[list[str] | None] = None
    """Columns to read from the input (None = all)."""

    def plan(self) -> list[Task]:
        tasks = []
        for source in self.ctx.sources:
            parts = self.input_parts(source)
            for index, path in enumerate(parts):
                tasks.append(Task(task_id=f"{source}-{index:05d}", source=source, inputs=(path,)))
        return tasks

    def process(self, table: pa.Table, task: Task) -> BatchDecision:
        raise NotImplementedError

    def run_task(self, task: Task) -> TaskResult:
        assert task.source is not None
        workdir, result = self.workdir, TaskResult()
        stats = result.source(task.source)
        kept, dropped = self.part_writers(task)
        for path in task.inputs:
            for batch in workdir.iter_batches(path, self.ctx.batch_size, self.columns):
                table = pa.Table.from_batches([batch])
                decision = self.process(table, task)
                stats.docs_in += table.num_rows
                stats.docs_out += decision.kept.num_rows
                stats.bytes_out += text_bytes(decision.kept)
                if decision.dropped.num_rows:
                    for item in pc.value_counts(decision.dropped[REASON_COLUMN]).to_pylist():
                        stats.add_dropped(item["values"], item["counts"])
                kept.write(decision.kept)
                dropped.write(decision.dropped)
        result.outputs = [workdir.relative(p) for p in kept.close() + dropped.close()]
        stats.check(f"stage {self.stage_id} task {task.task_id}")
        return result
