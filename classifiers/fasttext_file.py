"""Checks that a file is a whole fastText model without loading it.

fastText's loader accepts a truncated `.bin` silently (the missing weights read as garbage), so a
half-downloaded model would score a whole corpus wrongly. The format is simple enough to walk
(magic, args, dictionary, then dense or product-quantized matrices, see fastText's
`FastText::saveModel`), which gives the exact expected size from the header alone, in a second
even for a multi-GB model, on the driver before any task starts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.stage import StageError

FASTTEXT_MAGIC = 793712314
_ARGS_BYTES = 12 * 4 + 8  # dim ws epoch minCount neg wordNgrams loss model bucket minn maxn lrUpdateRate, t
_PQ_KSUB = 256
_LABEL_ENTRY = 1


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

    def cstring(self) -> bytes:
        parts = []
        while True:
            chunk = self.handle.read(256)
            if not chunk:
                raise StageError(f"{self.path} is not a complete fastText model: it ends inside the dictionary")
            end = chunk.find(b"\0")
            if end >= 0:
                parts.append(chunk[:end])
                self.handle.seek(end + 1 - len(chunk), 1)
                return b"".join(parts)
            parts.append(chunk)


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
    size = path.stat().st_size
    with open(path, "rb") as handle:
        r = _Reader(handle, path)
        if size < 8 or r.unpack("i")[0] != FASTTEXT_MAGIC:
            raise StageError(f"{path} is not a fastText model (wrong magic number)")
        (version,) = r.unpack("i")
        dim, _ws, _epoch, _min_count, _neg, word_ngrams, _loss, _model, bucket = r.unpack("9i")
        r.skip(_ARGS_BYTES - 9 * 4)
        entries, nwords, _nlabels = r.unpack("3i")
        _ntokens, prune_size = r.unpack("2q")
        labels = []
        for _ in range(entries):
            name = r.cstring()
            _count, entry_type = r.unpack("qb")
            if entry_type == _LABEL_ENTRY:
                labels.append(name.decode("utf-8", "replace"))
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
