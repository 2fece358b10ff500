"""The workdir layout and its atomic file operations, on any fsspec filesystem.

Layout (see DESIGN.md):
    WORKDIR/<stage>/<source>/part-<task>-<k>.parquet      kept documents / stage outputs
    WORKDIR/removed/<stage>/<source>/part-<task>-<k>.parquet
    WORKDIR/_state/<stage>/<task>.json                     task marker: stats + config hash
    WORKDIR/_state/<stage>/_stage.json                     stage marker: done, sources, config hash
"""

from __future__ import annotations

import json
import posixpath
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

STATE_DIR = "_state"
REMOVED_DIR = "removed"
STAGE_MARKER = "_stage.json"
PARQUET_COMPRESSION = "zstd"
ROW_GROUP_BYTES = 64 * 2**20


class WorkdirError(ValueError):
    """A workdir that should exist and does not (a mistyped path for a read-only command)."""


@dataclass
class Workdir:
    """A run's root folder, local or remote; every path it hands out is relative-safe and absolute."""

    url: str
    create: bool = True
    """False for commands that only read a finished run: a missing folder is an error, not created."""
    fs: fsspec.AbstractFileSystem = field(init=False, repr=False)
    root: str = field(init=False)

    def __post_init__(self) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.root = self.root.rstrip("/") or "/"
        if self.create:
            self.fs.makedirs(self.root, exist_ok=True)
        elif not self.fs.exists(self.root):
            raise WorkdirError(f"workdir {self.url} does not exist")

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.url, self.create = state["url"], True
        self.__post_init__()

    # ---- paths -------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def stage_dir(self, stage: str, source: str | None = None) -> str:
        return self.path(stage, source) if source else self.path(stage)

    def removed_dir(self, stage: str, source: str | None = None) -> str:
        return self.path(REMOVED_DIR, stage, source) if source else self.path(REMOVED_DIR, stage)

    def state_dir(self, stage: str) -> str:
        return self.path(STATE_DIR, stage)

    def task_marker(self, stage: str, task_id: str) -> str:
        return self.path(STATE_DIR, stage, f"{task_id}.json")

    def stage_marker(self, stage: str) -> str:
        return self.path(STATE_DIR, stage, STAGE_MARKER)

    def relative(self, path: str) -> str:
        return posixpath.relpath(path, self.root)

    # ---- listing -----------------------------------------------------------------------------
    def parts(self, folder: str) -> list[str]:
        """Sorted Parquet files directly under `folder` (temporary files excluded)."""
        if not self.fs.exists(folder):
            return []
        names = self.fs.ls(folder, detail=False)
        return sorted(p for p in names if p.endswith(".parquet") and not posixpath.basename(p).startswith("."))

    def sources_with_output(self, stage: str) -> list[str]:
        folder = self.stage_dir(stage)
        if not self.fs.exists(folder):
            return []
        return sorted(posixpath.basename(p) for p in self.fs.ls(folder, detail=False) if self.fs.isdir(p))

    # ---- atomic writes -----------------------------------------------------------------------
    def _tmp_name(self, path: str) -> str:
        return f"{posixpath.dirname(path)}/.tmp-{uuid.uuid4().hex}-{posixpath.basename(path)}"

    def write_bytes_atomic(self, path: str, data: bytes) -> None:
        self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        tmp = self._tmp_name(path)
        with self.fs.open(tmp, "wb") as handle:
            handle.write(data)
        self.fs.mv(tmp, path)

    def write_json_atomic(self, path: str, obj: Any) -> None:
        self.write_bytes_atomic(path, json.dumps(obj, indent=1, sort_keys=True).encode())

    def read_json(self, path: str) -> Any:
        with self.fs.open(path, "rb") as handle:
            return json.loads(handle.read())

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def remove(self, path: str) -> None:
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def read_table(self, path: str, columns: list[str] | None = None) -> pa.Table:
        with self.fs.open(path, "rb") as handle:
            return pq.read_table(handle, columns=columns)

    def iter_batches(self, path: str, batch_size: int, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        with self.fs.open(path, "rb") as handle:
            yield from pq.ParquetFile(handle).iter_batches(batch_size=batch_size, columns=columns)

    def write_table_atomic(self, path: str, table: pa.Table) -> None:
        """Write one Parquet file under a temporary name, then rename: readers never see half a file.

        Row groups of about ROW_GROUP_BYTES keep a reader's memory bounded by that, not by the file."""
        self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        tmp = self._tmp_name(path)
        rows_per_group = max(1, int(table.num_rows * ROW_GROUP_BYTES / max(table.nbytes, 1)))
        with self.fs.open(tmp, "wb") as handle:
            pq.write_table(table, handle, compression=PARQUET_COMPRESSION, row_group_size=rows_per_group)
        self.fs.mv(tmp, path)

    def clear_task_outputs(self, folders: list[str], task_id: str) -> None:
        """Delete what an interrupted attempt of `task_id` left, so a rerun never duplicates rows."""
        for folder in folders:
            if not self.fs.exists(folder):
                continue
            for path in self.fs.ls(folder, detail=False):
                name = posixpath.basename(path)
                if name.startswith(f"part-{task_id}-") or (name.startswith(".tmp-") and f"-part-{task_id}-" in name):
                    self.fs.rm(path)
