"""Streaming readers for the upstream formats (parquet, jsonl, jsonl.zst, json.gz) over fsspec.

Each reader yields `RawBatch`es: the text, the kept upstream columns and the row index of every
record in its file, plus the bad records it met. Parquet stays columnar end to end (no per-row
Python); JSON lines are parsed with orjson. Every error names the file, and the line or row.
"""

from __future__ import annotations

import contextlib
import gzip
import re
from dataclasses import dataclass, field
from typing import IO, Any, Iterator

import fsspec
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import zstandard

from pipeline.manifest import SourceManifest


class BadInputError(ValueError):
    """Input that cannot be read; the message names the file and, where known, the line or row."""


@dataclass
class BadRecord:
    row: int
    """Record index in its file (line number - 1 for JSON lines); -1 when the whole rest is lost."""
    reason: str
    detail: str
    raw: str | None = None


@dataclass
class RawBatch:
    rows: pa.Array
    """int64 record index of every good record within its file."""
    text: pa.Array
    columns: dict[str, pa.Array]
    bad: list[BadRecord] = field(default_factory=list)




@contextlib.contextmanager
def _decompressed(handle: IO[bytes], fmt: str) -> Iterator[IO[bytes]]:
    """A line-iterable binary stream; zstd streams may hold several frames (as DCLM's do)."""
    if fmt == "jsonl.zst":
        yield _zstd_lines(handle)  # type: ignore[misc]
    elif fmt == "json.gz":
        with gzip.GzipFile(fileobj=handle, mode="rb") as stream:
            yield stream
    else:
        yield handle


def list_files(source: SourceManifest, max_files: int | None = None) -> list[str]:
    """The source's data files as full URLs, in a stable order (file index = shard in ids)."""
    urls: list[str] = []
    if source.url_list:
        urls += _files_from_list(source)
    for pattern in source.expanded_uris():
        try:
            fs, _ = fsspec.core.url_to_fs(pattern)
            matches = sorted(fs.glob(pattern)) if fsspec.core.has_magic(pattern) else (
                [fs._strip_protocol(pattern)] if fs.exists(pattern) else [])
        except Exception as exc:  # each filesystem raises its own errors (offline, auth, missing repo)
            raise BadInputError(f"source {source.component}: cannot list {pattern!r}: {type(exc).__name__}: {exc}") from None
        if not matches:
            raise BadInputError(f"source {source.component}: no files match {pattern!r}")
        urls += [fs.unstrip_protocol(m) if "://" in pattern else m for m in matches]
    seen: set[str] = set()
    ordered = [u for u in urls if not (u in seen or seen.add(u))]
    return ordered[:max_files] if max_files else ordered


def _files_from_list(source: SourceManifest) -> list[str]:
    try:
        with fsspec.open(source.url_list, "rt") as handle:
            lines = [line.strip() for line in handle if line.strip()]
    except FileNotFoundError:
        raise BadInputError(f"source {source.component}: url_list {source.url_list!r} not found") from None
    pattern = re.compile(source.url_pattern) if source.url_pattern else None
    urls = [line for line in lines if pattern is None or pattern.search(line)]
    if not urls:
        raise BadInputError(f"source {source.component}: no line of {source.url_list!r} matches {source.url_pattern!r}")
    return urls


def read_file(url: str, source: SourceManifest, batch_size: int, skip_bad: bool) -> Iterator[RawBatch]:
    """Stream one file of `source`. With `skip_bad`, bad records are reported instead of raised."""
    if source.format == "parquet":
        yield from _read_parquet(url, source, batch_size, skip_bad)
    else:
        yield from _read_json_lines(url, source, batch_size, skip_bad)


def _zstd_lines(handle: IO[bytes], chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Lines of a (multi-frame) zstd stream; a frame cut short raises instead of ending quietly."""
    decompressor = zstandard.ZstdDecompressor()
    frame = decompressor.decompressobj()
    pending, in_frame = b"", False
    while chunk := handle.read(chunk_size):
        data = b""
        while chunk:
            in_frame = True
            data += frame.decompress(chunk)
            chunk = b""
            if frame.eof:
                chunk, frame, in_frame = frame.unused_data, decompressor.decompressobj(), False
        lines = (pending + data).split(b"\n")
        pending = lines.pop()
        yield from (line + b"\n" for line in lines)
    if in_frame:
        raise EOFError("zstd stream ends in the middle of a frame")
    if pending:
        yield pending


# ---- Parquet -----------------------------------------------------------------------------------
def _read_parquet(url: str, source: SourceManifest, batch_size: int, skip_bad: bool) -> Iterator[RawBatch]:
    wanted = [source.text_field] + [c for c in source.keep_columns if c != source.text_field]
    next_row = 0
    try:
        with fsspec.open(url, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            names = set(parquet.schema_arrow.names)
            missing = [c for c in wanted if c not in names]
            if missing:
                raise BadInputError(f"{url}: missing field(s) {missing} (columns: {sorted(names)})")
            for batch in parquet.iter_batches(batch_size=batch_size, columns=wanted):
                yield _parquet_batch(url, source, batch, next_row, skip_bad)
                next_row += batch.num_rows
    except BadInputError:
        raise
    except (OSError, pa.ArrowException) as exc:
        if isinstance(exc, FileNotFoundError):
            raise BadInputError(f"{url}: file not found") from None
        detail = f"corrupt or truncated Parquet file (after row {next_row}): {exc}"
        if not skip_bad:
            raise BadInputError(f"{url}: {detail}") from None
        yield RawBatch(pa.array([], pa.int64()), pa.array([], pa.string()), {},
                       [BadRecord(-1, "corrupt_file", detail)])


def _parquet_batch(url: str, source: SourceManifest, batch: pa.RecordBatch, first_row: int,
                   skip_bad: bool) -> RawBatch:
    rows = pa.array(range(first_row, first_row + batch.num_rows), pa.int64())
    text = batch.column(source.text_field)
    if not pa.types.is_string(text.type) and not pa.types.is_large_string(text.type):
        raise BadInputError(f"{url}: text field {source.text_field!r} has type {text.type}, expected string")
    bad: list[BadRecord] = []
    problems = _invalid_text_rows(text)
    if problems:
        if not skip_bad:
            row, _, detail = problems[0]
            raise BadInputError(f"{url}: row {first_row + row}: {detail}")
        bad = [BadRecord(first_row + r, reason, detail) for r, reason, detail in problems]
        keep = pc.invert(pc.is_in(pa.array(range(batch.num_rows)), pa.array([r for r, _, _ in problems])))
        batch, rows = batch.filter(keep), rows.filter(keep)
        text = batch.column(source.text_field)
    columns = {name: batch.column(name) for name in source.keep_columns}
    return RawBatch(rows, text.cast(pa.string()), columns, bad)


def _invalid_text_rows(text: pa.Array) -> list[tuple[int, str, str]]:
    """(row, reason, detail) of rows whose text is null or not valid UTF-8 (Parquet allows both)."""
    problems = [(int(i), "missing_text", "text is null") for i in pc.indices_nonzero(pc.is_null(text)).to_pylist()]
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        for index, value in enumerate(text.cast(pa.binary()).to_pylist()):
            if value is not None:
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError as exc:
                    problems.append((index, "invalid_utf8", f"invalid UTF-8: {exc}"))
    return sorted(problems)


# ---- JSON lines --------------------------------------------------------------------------------
def _read_json_lines(url: str, source: SourceManifest, batch_size: int, skip_bad: bool) -> Iterator[RawBatch]:
    builder = _JsonBatchBuilder(url, source, skip_bad)
    line_no = 0
    try:
        with fsspec.open(url, "rb") as raw_handle, _decompressed(raw_handle, source.format) as handle:
            for line_no, raw in enumerate(handle, start=1):
                builder.add(line_no - 1, raw)
                if builder.size >= batch_size:
                    yield builder.flush()
    except BadInputError:
        raise
    except FileNotFoundError:
        raise BadInputError(f"{url}: file not found") from None
    except Exception as exc:  # zstd/gzip/EOF errors differ by codec; all mean a damaged file
        detail = f"truncated or corrupt {source.format} file after line {line_no}: {type(exc).__name__}: {exc}"
        if not skip_bad:
            raise BadInputError(f"{url}: {detail}") from None
        builder.bad.append(BadRecord(-1, "corrupt_file", detail))
    yield builder.flush()


class _JsonBatchBuilder:
    """Accumulates parsed JSON records into Arrow columns, typed by the source manifest."""

    def __init__(self, url: str, source: SourceManifest, skip_bad: bool):
        self.url, self.source, self.skip_bad = url, source, skip_bad
        self._reset()

    def _reset(self) -> None:
        self.rows: list[int] = []
        self.text: list[str] = []
        self.values: dict[str, list[Any]] = {c: [] for c in self.source.keep_columns}
        self.bad: list[BadRecord] = []

    @property
    def size(self) -> int:
        return len(self.rows)

    def _reject(self, row: int, reason: str, detail: str, raw: bytes) -> None:
        if not self.skip_bad:
            raise BadInputError(f"{self.url}: line {row + 1}: {detail}")
        self.bad.append(BadRecord(row, reason, detail, raw[:10_000].decode("utf-8", "replace")))

    def add(self, row: int, raw: bytes) -> None:
        if not raw.strip():
            return self._reject(row, "empty_line", "empty line", raw)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return self._reject(row, "invalid_utf8", f"invalid UTF-8: {exc}", raw)
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return self._reject(row, "malformed_json", f"malformed JSON: {exc}", raw)
        if not isinstance(record, dict):
            return self._reject(row, "malformed_json", f"expected a JSON object, got {type(record).__name__}", raw)
        text = record.get(self.source.text_field)
        if not isinstance(text, str):
            what = "missing" if text is None else f"not a string ({type(text).__name__})"
            return self._reject(row, "missing_text", f"text field {self.source.text_field!r} is {what}", raw)
        self.rows.append(row)
        self.text.append(text)
        for column, kind in self.source.keep_columns.items():
            value = record.get(column)
            if kind == "json" and value is not None:
                value = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
            self.values[column].append(value)

    def flush(self) -> RawBatch:
        columns = {c: _typed_array(self.url, c, kind, self.values[c]) for c, kind in self.source.keep_columns.items()}
        batch = RawBatch(pa.array(self.rows, pa.int64()), pa.array(self.text, pa.string()), columns, self.bad)
        self._reset()
        return batch


DECLARED_TYPES = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(),
                  "json": pa.string()}
"""Arrow type of each `keep_columns` type of a source manifest (`json` is stored as a string)."""


def _typed_array(url: str, column: str, kind: str, values: list[Any]) -> pa.Array:
    try:
        if kind == "auto":
            array = pa.array(values)
            return array.cast(pa.string()) if pa.types.is_null(array.type) else array
        return pa.array(values, type=DECLARED_TYPES[kind])
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        raise BadInputError(f"{url}: column {column!r} does not fit type {kind}: {exc}") from None
