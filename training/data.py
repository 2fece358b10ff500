"""Packed, mixture-weighted, resumable token batches from the tokenize stage's Parquet shards.

Reads exactly what the tokenize stage writes: `WORKDIR/tokens/manifest.json` and the shards it lists
(`input_ids` list<uint16|uint32>, EOS already ending every document). The work is split into
independent *streams*, one per (rank, DataLoader worker). Each stream owns a disjoint part of every
source (whole shards when there are enough, else a stride through the documents), draws the source of
each next document with the mixture probabilities, and packs documents back to back into windows of
`seq_len + 1` tokens (consecutive windows overlap by one token, so every token is a target once).
`segment_ids` number the documents inside each window for document masking.

A stream is a pure function of (manifest, seed, stream id, its position), and its position is a small
dict (cursor per source, RNG state, leftover tokens), so `TokenLoader.state_dict()` taken after any
batch resumes to exactly the batches an uninterrupted run would have produced.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline.workdir import Workdir

MANIFEST_PATH = "tokens/manifest.json"
STATE_VERSION = 1


class DataError(ValueError):
    """Token data that cannot be trained on; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Shard:
    path: str
    source: str
    documents: int
    tokens: int
    sha256: str


@dataclass(frozen=True)
class TokenManifest:
    """The validated token manifest plus the mixture probabilities the loader samples with."""

    workdir: Workdir
    vocab_size: int
    eos_id: int
    shards: tuple[Shard, ...]
    shares: dict[str, float]
    mean_doc_tokens: dict[str, float]

    @classmethod
    def load(cls, url: str, weights: dict[str, float] | None = None) -> "TokenManifest":
        workdir = Workdir(url)
        path = workdir.path(MANIFEST_PATH)
        if not workdir.exists(path):
            raise DataError(f"{path}: no token manifest; run the tokenize stage on this workdir first")
        raw = workdir.read_json(path)
        if raw.get("version") != 1:
            raise DataError(f"{path}: unsupported manifest version {raw.get('version')!r} (expected 1)")
        try:
            tokenizer = raw["tokenizer"]
            shards = tuple(
                Shard(s["path"], s["source"], int(s["documents"]), int(s["tokens"]), s["sha256"]) for s in raw["shards"]
            )
            sources = raw["sources"]
            vocab_size, eos_id = int(tokenizer["vocab_size"]), int(tokenizer["eos_id"])
        except (KeyError, TypeError) as exc:
            raise DataError(f"{path}: missing or malformed field {exc}") from None
        unknown = sorted({s.source for s in shards} - set(sources))
        if unknown:
            raise DataError(f"{path}: shards of sources {unknown} have no entry under `sources`")
        if weights is not None:
            missing = sorted(set(weights) - set(sources))
            if missing:
                raise DataError(f"data.weights names sources {missing} that {path} does not have ({sorted(sources)})")
            mass = {s: float(weights.get(s, 0.0)) * sources[s]["tokens"] for s in sources}
            total = sum(mass.values())
            shares = {s: m / total if total else 0.0 for s, m in mass.items()}
        else:
            shares = {s: float(v.get("share", 0.0)) for s, v in sources.items()}
        shares = {s: p for s, p in shares.items() if p > 0 and sources[s]["documents"] > 0}
        if not shares:
            raise DataError(f"{path}: no source has both documents and a positive mixture share")
        mean = {s: sources[s]["tokens"] / sources[s]["documents"] for s in shares}
        return cls(workdir, vocab_size, eos_id, shards, shares, mean)

    def shards_of(self, source: str) -> list[tuple[int, Shard]]:
        return [(i, s) for i, s in enumerate(self.shards) if s.source == source and s.documents > 0]

    def read_shard(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(token values, document offsets) of one shard, after checking its sha256 and schema."""
        shard = self.shards[index]
        path = self.workdir.path(shard.path)
        if not self.workdir.exists(path):
            raise DataError(f"{path}: shard listed in the token manifest is missing")
        with self.workdir.fs.open(path, "rb") as handle:
            data = handle.read()
        if hashlib.sha256(data).hexdigest() != shard.sha256:
            raise DataError(f"{path}: sha256 differs from the token manifest (file changed after tokenizing)")
        column = pq.read_table(io.BytesIO(data), columns=["input_ids"])["input_ids"]
        value_type = column.type.value_type if pa.types.is_list(column.type) else None
        if value_type not in (pa.uint16(), pa.uint32()):
            raise DataError(f"{path}: input_ids must be list<uint16> or list<uint32>, found {column.type}")
        array = column.combine_chunks()
        if len(array) != shard.documents:
            raise DataError(f"{path}: {len(array)} documents, the manifest says {shard.documents}")
        offsets = array.offsets.to_numpy().astype(np.int64)
        values = array.values.to_numpy()
        return values[offsets[0] : offsets[-1]], offsets - offsets[0]


@dataclass(frozen=True)
class Unit:
    """Part of a shard owned by one stream: documents j with j % stride == offset."""

    shard: int
    stride: int
    offset: int


def assign_units(shards: list[tuple[int, Shard]], stream: int, streams: int) -> list[Unit]:
    """Split one source among `streams`: whole shards round-robin when there are enough shards, else
    a stride through the source's documents (numbered across shards), so each document has one owner."""
    if len(shards) >= streams:
        return [Unit(index, 1, 0) for k, (index, _) in enumerate(shards) if k % streams == stream]
    units, before = [], 0
    for index, shard in shards:
        units.append(Unit(index, streams, (stream - before) % streams))
        before += shard.documents
    return units


def _unit_documents(unit: Unit, documents: int) -> int:
    return len(range(unit.offset, documents, unit.stride))


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([k & 0xFFFFFFFF for k in key])


class SourceCursor:
    """Walks one source's units for one stream: shuffled unit order and document order, per epoch."""

    def __init__(self, manifest: TokenManifest, source: str, units: list[Unit], seed: int, stream: int):
        self.manifest, self.source, self.units = manifest, source, units
        self.key = (seed, zlib.crc32(source.encode()))
        self.stream = stream
        self.documents = sum(_unit_documents(u, manifest.shards[u.shard].documents) for u in units)
        self.epoch, self.unit_pos, self.doc_pos = 0, 0, 0
        self._order: np.ndarray | None = None
        self._loaded: tuple[int, int, np.ndarray, np.ndarray, np.ndarray] | None = None

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "unit_pos": self.unit_pos, "doc_pos": self.doc_pos}

    def load_state(self, state: dict[str, int]) -> None:
        self.epoch, self.unit_pos, self.doc_pos = state["epoch"], state["unit_pos"], state["doc_pos"]
        self._order = None

    def _unit_order(self) -> np.ndarray:
        if self._order is None:
            self._order = _rng(*self.key, self.stream, self.epoch).permutation(len(self.units))
        return self._order

    def _documents(self, unit_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values, offsets, this epoch's document order) of a unit; the shard is read once per visit."""
        if self._loaded is None or self._loaded[0] != unit_index:
            unit = self.units[unit_index]
            values, offsets = self.manifest.read_shard(unit.shard)
            self._loaded = (unit_index, -1, values, offsets, np.zeros(0, dtype=np.int64))
        _, epoch, values, offsets, order = self._loaded
        if epoch != self.epoch:
            unit = self.units[unit_index]
            docs = np.arange(unit.offset, len(offsets) - 1, unit.stride)
            order = docs[_rng(*self.key, self.epoch, unit.shard, unit.offset).permutation(len(docs))]
            self._loaded = (unit_index, self.epoch, values, offsets, order)
        return values, offsets, order

    def next_document(self) -> np.ndarray:
        while True:
            if self.unit_pos >= len(self.units):
                self.epoch, self.unit_pos, self.doc_pos, self._order = self.epoch + 1, 0, 0, None
            values, offsets, order = self._documents(int(self._unit_order()[self.unit_pos]))
            if self.doc_pos >= len(order):
                self.unit_pos, self.doc_pos = self.unit_pos + 1, 0
                continue
            doc = order[self.doc_pos]
            self.doc_pos += 1
            return values[offsets[doc] : offsets[doc + 1]]


class PackedStream:
    """One independent stream of packed windows (see the module docstring)."""

    def __init__(self, manifest: TokenManifest, stream: int, streams: int, seq_len: int, batch_size: int, seed: int):
        self.seq_len, self.batch_size = seq_len, batch_size
        self.cursors: dict[str, SourceCursor] = {}
        for source in sorted(manifest.shares):
            cursor = SourceCursor(manifest, source, assign_units(manifest.shards_of(source), stream, streams), seed, stream)
            if cursor.documents:
                self.cursors[source] = cursor
        if not self.cursors:
            raise DataError(f"data stream {stream} of {streams} owns no documents: the corpus has fewer documents "
                            f"than ranks x dataloader workers; use fewer workers")
        self.sources = list(self.cursors)
        # A source's share is of tokens; draw documents with share / mean document length.
        weights = np.array([manifest.shares[s] / manifest.mean_doc_tokens[s] for s in self.sources])
        self.probs = weights / weights.sum()
        self.rng = _rng(seed, stream, 0xDA7A)
        self.buffer = np.zeros(0, dtype=np.int64)
        self.buffer_docs = np.zeros(0, dtype=np.int64)
        self.next_doc = 0

    def next_batch(self) -> dict[str, np.ndarray]:
        L = self.seq_len
        need = self.batch_size * L + 1
        tokens, docs, have = [self.buffer], [self.buffer_docs], len(self.buffer)
        while have < need:
            source = self.sources[int(self.rng.choice(len(self.sources), p=self.probs))]
            doc = self.cursors[source].next_document()
            tokens.append(doc.astype(np.int64))
            docs.append(np.full(len(doc), self.next_doc, dtype=np.int64))
            self.next_doc += 1
            have += len(doc)
        buffer, buffer_docs = np.concatenate(tokens), np.concatenate(docs)
        windows = np.lib.stride_tricks.sliding_window_view(buffer[:need], L + 1)[::L]
        segments = np.lib.stride_tricks.sliding_window_view(buffer_docs[:need], L + 1)[::L]
        segments = segments - segments[:, :1]
        self.buffer, self.buffer_docs = buffer[need - 1 :], buffer_docs[need - 1 :]
        return {
            "input_ids": windows[:, :-1].copy(),
            "labels": windows[:, 1:].copy(),
            "segment_ids": segments[:, :-1].astype(np.int32),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "cursors": {s: c.state() for s, c in self.cursors.items()},
            "buffer": self.buffer.tolist(),
            "buffer_docs": self.buffer_docs.tolist(),
            "next_doc": self.next_doc,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["cursors"]) != set(self.cursors):
            raise DataError(f"loader state has sources {sorted(state['cursors'])}, the data has {sorted(self.cursors)}")
        self.rng.bit_generator.state = state["rng"]
        for source, cursor_state in state["cursors"].items():
            self.cursors[source].load_state(cursor_state)
        self.buffer = np.asarray(state["buffer"], dtype=np.int64)
        self.buffer_docs = np.asarray(state["buffer_docs"], dtype=np.int64)
        self.next_doc = int(state["next_doc"])


class _WorkerStreams(torch.utils.data.IterableDataset):
    """DataLoader side: worker w serves logical stream (w + offset) % workers, starting from its state."""

    def __init__(self, loader: "TokenLoader", offset: int):
        self.loader, self.offset = loader, offset

    def __iter__(self) -> Iterator[tuple[int, dict[str, np.ndarray], dict[str, Any]]]:
        info = torch.utils.data.get_worker_info()
        logical = (info.id + self.offset) % self.loader.streams_per_rank
        stream = self.loader.make_stream(logical)
        while True:
            batch = stream.next_batch()
            yield logical, batch, stream.state_dict()


class TokenLoader:
    """Batches for one rank: dicts of int64 `input_ids`/`labels` and int32 `segment_ids`, (batch, seq_len)."""

    def __init__(
        self,
        data_url: str,
        seq_len: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        weights: dict[str, float] | None = None,
        pin_memory: bool = False,
    ):
        self.manifest = TokenManifest.load(data_url, weights)
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        self.streams_per_rank = max(1, num_workers)
        self.pin_memory = pin_memory
        self.states: list[dict[str, Any] | None] = [None] * self.streams_per_rank
        self.next_stream = 0
        self._iterator: Iterator[tuple[int, Any, dict[str, Any]]] | None = None
        for logical in range(self.streams_per_rank):
            self.make_stream(logical)  # fail now, in the main process, if a stream would be empty

    def make_stream(self, logical: int) -> PackedStream:
        streams = self.world_size * self.streams_per_rank
        stream = PackedStream(self.manifest, self.rank * self.streams_per_rank + logical, streams,
                              self.seq_len, self.batch_size, self.seed)
        if self.states[logical] is not None:
            stream.load_state_dict(self.states[logical])
        return stream

    def _round_robin(self) -> Iterator[tuple[int, dict[str, np.ndarray], dict[str, Any]]]:
        streams = [self.make_stream(i) for i in range(self.streams_per_rank)]
        logical = self.next_stream
        while True:
            batch = streams[logical].next_batch()
            yield logical, batch, streams[logical].state_dict()
            logical = (logical + 1) % self.streams_per_rank

    def _start(self) -> Iterator[tuple[int, Any, dict[str, Any]]]:
        if self.num_workers == 0:
            return self._round_robin()
        loader = torch.utils.data.DataLoader(
            _WorkerStreams(self, self.next_stream),
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            in_order=True,
        )
        return iter(loader)

    def __iter__(self) -> "TokenLoader":
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._iterator is None:
            self._iterator = self._start()
        logical, batch, state = next(self._iterator)
        self.states[logical] = state
        self.next_stream = (logical + 1) % self.streams_per_rank
        return {k: torch.as_tensor(v) for k, v in batch.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "layout": self._layout(),
            "next_stream": self.next_stream,
            "states": list(self.states),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise DataError(f"data loader state version {state.get('version')!r} is not {STATE_VERSION}")
        if state["layout"] != self._layout():
            raise DataError(f"data loader state was saved for {state['layout']}, this run has {self._layout()}; "
                            f"resume with the same world size, workers, seq_len, batch size and seed")
        self.states = list(state["states"])
        self.next_stream = int(state["next_stream"])
        self._iterator = None

    def _layout(self) -> dict[str, int]:
        return {"rank": self.rank, "world_size": self.world_size, "streams_per_rank": self.streams_per_rank,
                "seq_len": self.seq_len, "batch_size": self.batch_size, "seed": self.seed}
