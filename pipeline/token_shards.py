"""Token shard files: a stream of tokenized documents cut into Parquet shards of bounded token count.

Rows are written as they come, one row group of about `ROW_GROUP_TOKENS` tokens at a time, through
a file object that hashes the bytes on their way out: memory stays at one row group whatever the
shard size, and the sha256 recorded in the manifest costs no second read. A shard is written under
a temporary name and renamed when complete (the workdir's `.tmp-*` convention, so an interrupted
task's leftovers are cleared before its retry).
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.workdir import PARQUET_COMPRESSION, Workdir

ROW_GROUP_TOKENS = 2**20
"""Tokens per Parquet row group (a row group ends at the first document boundary past it): about
2 MB of ids, small enough for a loader to read a shard piece by piece and for the writer's own
buffers (levels, pages, compression) to stay small."""


class HashingFile(io.RawIOBase):
    """A write-only file that forwards bytes to `handle` and keeps their sha256 and count."""

    def __init__(self, handle: Any):
        super().__init__()
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.digest.update(view)
        self.handle.write(view)
        self.size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.size


@dataclass
class _OpenShard:
    path: str
    tmp: str
    handle: Any
    hashing: HashingFile
    writer: pq.ParquetWriter


@dataclass
class ShardWriter:
    """Cuts tokenized rows (`id`, `source`, `input_ids`, `num_tokens`) into shards of at most `target`
    tokens; a document is never split, so only a shard holding one longer document exceeds it."""

    workdir: Workdir
    folder: str
    task_id: str
    source: str
    target: int
    shards: list[dict[str, Any]] = field(default_factory=list)
    oversized: int = 0
    _buffer: list[pa.Table] = field(default_factory=list)
    _buffered_tokens: int = 0
    _rows: int = 0
    _tokens: int = 0
    _open: _OpenShard | None = None

    def write(self, table: pa.Table) -> None:
        start = 0
        counts = table["num_tokens"].to_numpy().tolist()
        for row, count in enumerate(counts):
            if count > self.target:
                self.oversized += 1
            if self._tokens and self._tokens + count > self.target:
                self._append(table.slice(start, row - start), sum(counts[start:row]))
                self.close_shard()
                start = row
            self._tokens += count
        self._append(table.slice(start), sum(counts[start:]))

    def _append(self, piece: pa.Table, tokens: int) -> None:
        if piece.num_rows == 0:
            return
        self._buffer.append(piece)
        self._buffered_tokens += tokens
        self._rows += piece.num_rows
        if self._buffered_tokens >= ROW_GROUP_TOKENS:
            self._write_buffer()

    def _write_buffer(self) -> None:
        """Write the buffered rows as one row group."""
        if not self._buffer:
            return
        table = pa.concat_tables(self._buffer).combine_chunks()
        self._buffer, self._buffered_tokens = [], 0
        if self._open is None:
            self._open = self._open_shard(table.schema)
        self._open.writer.write_table(table, row_group_size=table.num_rows)

    def _open_shard(self, schema: pa.Schema) -> _OpenShard:
        name = f"part-{self.task_id}-{len(self.shards):04d}.parquet"
        path, tmp = posixpath.join(self.folder, name), posixpath.join(self.folder, f".tmp-{uuid.uuid4().hex}-{name}")
        self.workdir.fs.makedirs(self.folder, exist_ok=True)
        handle = self.workdir.fs.open(tmp, "wb")
        hashing = HashingFile(handle)
        writer = pq.ParquetWriter(hashing, schema, compression=PARQUET_COMPRESSION, use_dictionary=["source"])
        return _OpenShard(path, tmp, handle, hashing, writer)

    def close_shard(self) -> None:
        """Finish the current shard (if it has rows): last row group, footer, rename, record."""
        self._write_buffer()
        if self._open is None:
            return
        shard, self._open = self._open, None
        shard.writer.close()
        shard.handle.close()
        self.workdir.fs.mv(shard.tmp, shard.path)
        self.shards.append({"path": self.workdir.relative(shard.path), "source": self.source,
                            "documents": self._rows, "tokens": self._tokens, "bytes": shard.hashing.size,
                            "sha256": shard.hashing.digest.hexdigest()})
        self._rows = self._tokens = 0
