"""Reads document texts for classifier training: Parquet or JSON lines files, folders, globs, URLs.

A workdir stage's documents are a folder of Parquet parts (WORKDIR/<stage>/<source>), so a
folder is read whole, in sorted order, which makes the training set (and the model) repeatable.
"""

from __future__ import annotations

import gzip
import io
import posixpath
from typing import Iterator

import fsspec
import orjson
import pyarrow.parquet as pq
import zstandard

SUFFIXES = (".parquet", ".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst")


class TextSetError(ValueError):
    """An input of a training set that cannot be read; the message names it."""


def expand_inputs(locations: list[str]) -> list[str]:
    """Every data file named by the given files, folders or globs, as fsspec URLs, sorted per input."""
    files: list[str] = []
    for location in locations:
        fs, path = fsspec.core.url_to_fs(location)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        prefix = "" if protocol in ("file", "local") else f"{protocol}://"
        if any(ch in path for ch in "*?["):
            found = sorted(fs.glob(path))
        elif fs.isdir(path):
            found = sorted(p for p in fs.find(path) if not posixpath.basename(p).startswith("."))
        elif fs.exists(path):
            found = [path]
        else:
            raise TextSetError(f"training input {location!r} does not exist")
        found = [p for p in found if p.endswith(SUFFIXES)]
        if not found:
            raise TextSetError(f"training input {location!r} holds no {'/'.join(SUFFIXES)} files")
        files.extend(prefix + p for p in found)
    return files


def _json_lines(url: str, raw: bytes, text_field: str) -> Iterator[str]:
    if url.endswith(".gz"):
        raw = gzip.decompress(raw)
    elif url.endswith(".zst"):
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise TextSetError(f"{url} line {number}: not valid JSON: {exc}") from None
        if not isinstance(record, dict) or text_field not in record:
            raise TextSetError(f"{url} line {number}: no {text_field!r} field")
        yield record[text_field] or ""


def read_texts(locations: list[str], text_field: str = "text", limit: int | None = None) -> list[str]:
    """All texts of the inputs in order (at most `limit`)."""
    texts: list[str] = []
    for url in expand_inputs(locations):
        if url.endswith(".parquet"):
            with fsspec.open(url, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                if text_field not in parquet.schema_arrow.names:
                    raise TextSetError(f"{url} has no {text_field!r} column; columns: {parquet.schema_arrow.names}")
                texts.extend(t or "" for t in parquet.read(columns=[text_field])[text_field].to_pylist())
        else:
            with fsspec.open(url, "rb") as handle:
                texts.extend(_json_lines(url, handle.read(), text_field))
        if limit is not None and len(texts) >= limit:
            return texts[:limit]
    return texts
