"""Checks that a file is a whole fastText model without loading it.

fastText's loader accepts a truncated `.bin` silently (the missing weights read as garbage), so a
half-downloaded model would score a whole corpus wrongly. The format is simple enough to walk
(magic, args, dictionary, then dense or product-quantized matrices, see fastText's
`FastText::saveModel`), which gives the exact expected size from the header alone, in a second
even for a multi-GB model, on the driver before any task starts.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.stage import StageError

FASTTEXT_MAGIC = 793712314
_ARGS_BYTES = 12 * 4 + 8  # dim ws epoch minCount neg wordNgrams loss model bucket minn maxn lrUpdateRate, t
_PQ_KSUB = 256
_LABEL_ENTRY = 1
_DICT_CHUNK = 2**20


class _Reader:
    def __init__(self, handle: BinaryIO, path: Path):
        self.handle, self.path = handle, path

    def take(self, n: int) -> bytes:
        data = self.handle.read(n)
        if len(data) != n:
            raise StageError(f"{self.path} is not a complete fastText model: it ends early (truncated download?)")
        return data

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def skip(self, n: int) -> None:
        self.handle.seek(n, 1)

    def dictionary_labels(self, entries: int) -> list[str]:
        """Walk the dictionary (per entry: name, NUL, int64 count, int8 type) in 1 MiB reads."""
        labels: list[str] = []
        buf, pos = b"", 0
        for _ in range(entries):
            end = buf.find(b"\0", pos)
            while end < 0 or end + 10 > len(buf):
                more = self.handle.read(_DICT_CHUNK)
                if not more:
                    raise StageError(f"{self.path} is not a complete fastText model: it ends inside the dictionary")
                buf, pos = buf[pos:] + more, 0
                end = buf.find(b"\0")
            if buf[end + 9] == _LABEL_ENTRY:
                labels.append(buf[pos:end].decode("utf-8", "replace"))
            pos = end + 10
        self.handle.seek(pos - len(buf), 1)  # hand back what was read past the dictionary
        return labels


def _skip_product_quantizer(r: _Reader) -> None:
    dim, _nsubq, _dsub, _lastdsub = r.unpack("4i")
    r.skip(4 * dim * _PQ_KSUB)


def _skip_matrix(r: _Reader, quantized: bool) -> None:
    if not quantized:
        m, n = r.unpack("2q")
        r.skip(4 * m * n)
        return
    (qnorm,) = r.unpack("?")
    m, _n = r.unpack("2q")
    (codesize,) = r.unpack("i")
    r.skip(codesize)
    _skip_product_quantizer(r)
    if qnorm:
        r.skip(m)
        _skip_product_quantizer(r)


@dataclass(frozen=True)
class FastTextHeader:
    version: int
    dim: int
    word_ngrams: int
    bucket: int
    words: int
    labels: tuple[str, ...]
    """In fastText's own spelling, e.g. `__label__hq`."""


def check_fasttext_file(path: Path) -> FastTextHeader:
    """Raise StageError unless `path` is a complete fastText model; return its header and labels."""
    stat = path.stat()
    return _check(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _check(path: Path, size: int, _mtime_ns: int) -> FastTextHeader:
    """One walk per file version and process (the driver checks, hashes and loads the same file)."""
    with open(path, "rb") as handle:
        r = _Reader(handle, path)
        if size < 8 or r.unpack("i")[0] != FASTTEXT_MAGIC:
            raise StageError(f"{path} is not a fastText model (wrong magic number)")
        (version,) = r.unpack("i")
        dim, _ws, _epoch, _min_count, _neg, word_ngrams, _loss, _model, bucket = r.unpack("9i")
        r.skip(_ARGS_BYTES - 9 * 4)
        entries, nwords, _nlabels = r.unpack("3i")
        _ntokens, prune_size = r.unpack("2q")
        labels = r.dictionary_labels(entries)
        r.skip(8 * max(prune_size, 0))
        (quant_input,) = r.unpack("?")
        _skip_matrix(r, quant_input)
        (quant_output,) = r.unpack("?")
        _skip_matrix(r, quant_output)
        expected = handle.tell()
    if expected != size:
        problem = "truncated" if expected > size else f"{size - expected} unexpected trailing bytes"
        raise StageError(f"{path} is not a complete fastText model: {problem} "
                         f"(header says {expected} bytes, file has {size})")
    return FastTextHeader(version, dim, word_ngrams, bucket, nwords, tuple(labels))
