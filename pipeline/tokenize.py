"""The tokenize stage: each source's final documents -> Parquet token shards + `tokens/manifest.json`.

Output (the contract the trainer reads):
    WORKDIR/tokens/<source>/part-<task>-<k>.parquet   zstd; one row per document: id, source,
        input_ids (list<uint16>, or list<uint32> for vocabularies over 65,536), num_tokens (int32);
        EOS ends every document, BOS starts it when `add_bos`.
    WORKDIR/tokens/manifest.json                      shards with sha256, counts, tokenizer, mixture.

Planning: the input partitions of a source are grouped, in order (or in a seeded random order when
`shuffle`), into tasks of about `shards_per_task` shards' worth of text (estimated from Parquet
metadata). A task fills shards of at most `shard_tokens` tokens, never splitting a document: a
shard is closed before a document that would overflow it, so only a shard holding one document
longer than the target exceeds it. With `shuffle`, a task permutes all its documents (seeded by
the recipe seed and task id) before cutting shards: documents of distant input files meet.

Memory per task: without shuffle, one encode batch plus one Parquet row group (shards are
streamed to their files); with shuffle, the task's tokens (about `shards_per_task` x
`shard_tokens` x 2 bytes for uint16) plus one row group.

Empty documents (no token besides BOS/EOS) are skipped by default and recorded under
`removed/tokens/` with reason `empty`; `empty_documents: eos_only` keeps them as a lone EOS.
"""

from __future__ import annotations

import hashlib
import os
import random
from typing import Any, Iterator, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from pipeline.stage import REASON_COLUMN, PartWriter, SourceStats, Stage, StageError, Task, TaskResult
from pipeline.token_shards import ShardWriter
from pipeline.tokenizer import DEFAULT_TOKENIZER, LoadedTokenizer, TokenizerError, encode_documents, load_tokenizer
from pipeline.workdir import Workdir

TOKENS_DIR = "tokens"
TOKEN_MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
EMPTY_REASON = "empty"
PLANNING_BYTES_PER_TOKEN = 4.0
"""Text bytes per token used only to group input partitions into tasks (Mistral v0.1 on English
web text gives 4-4.5); shard sizes are exact token counts, whatever this estimate."""


class TokenizeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokenizer: str = Field(default=DEFAULT_TOKENIZER,
                           description="mistral-v0.1 (offline build), a Hub name, or a local tokenizer file")
    add_bos: bool = Field(default=False, description="start every document with BOS (EOS always ends it)")
    shard_tokens: int = Field(default=100_000_000, ge=1, description="target tokens per output shard")
    shards_per_task: int = Field(default=4, ge=1, description="shards' worth of input text per task")
    shuffle: bool = Field(default=False, description="seeded shuffle of documents within and across shards")
    empty_documents: Literal["skip", "eos_only"] = "skip"
    batch_size: int = Field(default=256, ge=1, description="documents per encode_batch call (bounds memory: "
                            "tokenizers keeps ~180 bytes per token until the batch is converted)")
    threads: int = Field(default=1, ge=1, description="tokenizer threads per task (also CPUs asked of Ray)")


def text_bytes_estimate(workdir: Workdir, path: str) -> int:
    """Uncompressed bytes of the `text` column, from the Parquet footer only."""
    with workdir.fs.open(path, "rb") as handle:
        meta = pq.ParquetFile(handle).metadata
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]
    if "text" not in names:
        raise StageError(f"{path} has no `text` column (columns: {names})")
    column = names.index("text")
    return sum(meta.row_group(g).column(column).total_uncompressed_size for g in range(meta.num_row_groups))


def task_seed(seed: int, task_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{task_id}".encode()).digest()[:8], "little")


class TokenizeStage(Stage):
    """Tokenizes the final documents of each source into token shards and writes the token manifest."""

    type_name = "tokenize"
    Params = TokenizeParams
    produces_documents = False
    params: TokenizeParams

    def __init__(self, ctx):  # type: ignore[no-untyped-def]
        super().__init__(ctx)
        self._tokenizer: LoadedTokenizer | None = None

    # ---- identity / checks -------------------------------------------------------------------
    def hash_extra(self) -> Any:
        return {"tokenizer": self._load().info.fingerprint, "mixture": self._weights()}

    def validate(self) -> None:
        if self.stage_id != TOKENS_DIR:
            raise StageError(f"the tokenize stage must have id {TOKENS_DIR!r} (got {self.stage_id!r}): its shards "
                             f"and manifest live in WORKDIR/{TOKENS_DIR}/, where the trainer reads them")
        self._load()
        self._weights()

    def _load(self) -> LoadedTokenizer:
        try:
            return load_tokenizer(self.params.tokenizer, self.params.add_bos)
        except TokenizerError as exc:
            raise StageError(f"stage {self.stage_id!r}: {exc}") from None

    def _weights(self) -> dict[str, float]:
        mixture = self.ctx.recipe.recipe.mixture
        missing = [s for s in self.ctx.sources if mixture and s not in mixture]
        if missing:
            raise StageError(f"{self.ctx.recipe.path}: `mixture` has no weight for {missing}; give every "
                             f"tokenized source a weight (or none at all for natural proportions)")
        negative = {s: w for s, w in mixture.items() if w < 0}
        if negative:
            raise StageError(f"{self.ctx.recipe.path}: negative mixture weights {negative}")
        return {s: float(mixture.get(s, 1.0)) for s in self.ctx.sources}

    def resources(self) -> dict[str, float]:
        return {"num_cpus": self.params.threads}

    # ---- plan ------------------------------------------------------------------------------
    def plan(self) -> list[Task]:
        budget = self.params.shard_tokens * self.params.shards_per_task * PLANNING_BYTES_PER_TOKEN
        tasks = []
        for source in self.ctx.sources:
            parts = self.input_parts(source)
            if self.params.shuffle:
                random.Random(f"{self.ctx.recipe.recipe.seed}:{source}").shuffle(parts)
            groups: list[list[str]] = []
            size = budget
            for path in parts:
                if size >= budget:
                    groups.append([])
                    size = 0
                groups[-1].append(path)
                size += text_bytes_estimate(self.workdir, path)
            for index, group in enumerate(groups):
                tasks.append(Task(task_id=f"{source}-{index:05d}", source=source, inputs=tuple(group)))
        return tasks

    def output_folders(self, task: Task) -> list[str]:
        assert task.source is not None
        return [self.workdir.path(TOKENS_DIR, task.source), self.workdir.removed_dir(self.stage_id, task.source)]

    # ---- run -------------------------------------------------------------------------------
    def setup(self) -> None:
        os.environ.setdefault("RAYON_NUM_THREADS", str(self.params.threads))
        self._tokenizer = self._load()

    def run_task(self, task: Task) -> TaskResult:
        assert task.source is not None and self._tokenizer is not None
        workdir, result = self.workdir, TaskResult()
        stats = result.source(task.source)
        shards = ShardWriter(workdir, workdir.path(TOKENS_DIR, task.source), task.task_id, task.source,
                             self.params.shard_tokens)
        removed = PartWriter(workdir, workdir.removed_dir(self.stage_id, task.source), task.task_id,
                             self.ctx.target_part_bytes)
        held: list[pa.Table] = []
        for table in self._tokenized_batches(task, stats, removed):
            if self.params.shuffle:
                held.append(table)
            else:
                shards.write(table)
        if held:
            merged = pa.concat_tables(held)
            order = np.random.default_rng(task_seed(self.ctx.recipe.recipe.seed, task.task_id)).permutation(
                merged.num_rows)
            for start in range(0, len(order), self.params.batch_size):  # one permuted batch in memory at a time
                shards.write(merged.take(pa.array(order[start:start + self.params.batch_size])))
        shards.close_shard()
        removed.close()
        tokens = sum(s["tokens"] for s in shards.shards)
        result.outputs = [s["path"] for s in shards.shards]
        result.extra = {"shards": shards.shards, "tokens": {task.source: tokens},
                        "oversized_documents": shards.oversized, "empty_documents": stats.dropped.get(EMPTY_REASON, 0)}
        return result

    def _tokenized_batches(self, task: Task, stats: SourceStats, removed: PartWriter) -> Iterator[pa.Table]:
        """Token tables of the task's documents, batch by batch, with empty ones set aside."""
        assert task.source is not None and self._tokenizer is not None
        specials = 1 + int(self.params.add_bos)
        for path in task.inputs:
            for batch in self.workdir.iter_batches(path, self.params.batch_size, ["id", "text"]):
                texts = pc.fill_null(batch.column("text"), "")
                input_ids, counts = encode_documents(self._tokenizer, texts.to_pylist())
                table = pa.table({"id": batch.column("id"),
                                  "source": pa.array([task.source] * batch.num_rows, pa.string()),
                                  "input_ids": input_ids, "num_tokens": pa.array(counts, pa.int32())})
                stats.docs_in += batch.num_rows
                if self.params.empty_documents == "skip":
                    empty = pa.array(counts <= specials)
                    dropped = int(pc.sum(empty).as_py() or 0)
                    if dropped:
                        stats.add_dropped(EMPTY_REASON, dropped)
                        gone = pa.table({"id": batch.column("id"), "text": texts}).filter(empty)
                        removed.write(gone.append_column(REASON_COLUMN, pa.array([EMPTY_REASON] * dropped)))
                        table = table.filter(pc.invert(empty))
                        texts = texts.filter(pc.invert(empty))
                stats.docs_out += table.num_rows
                stats.bytes_out += int(pc.sum(pc.binary_length(texts)).as_py() or 0)
                yield table

    def report_section(self) -> str | None:
        path = self.workdir.path(TOKENS_DIR, TOKEN_MANIFEST)
        if not self.workdir.exists(path):
            return None
        manifest = self.workdir.read_json(path)
        info = manifest["tokenizer"]
        lines = [f"Tokenizer `{info['name']}` ({info['origin']}), vocabulary {info['vocab_size']:,}, EOS "
                 f"{info['eos_id']} after every document; share = {manifest['share_definition']}.", "",
                 "| source | documents | tokens | tokens/doc | shards | weight | share |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name, row in manifest["sources"].items():
            per_doc = row["tokens"] / row["documents"] if row["documents"] else 0.0
            lines.append(f"| {name} | {row['documents']:,} | {row['tokens']:,} | {per_doc:.1f} | {row['shards']} | "
                         f"{row['weight']:g} | {row['share']:.2%} |")
        return "\n".join(lines)

    # ---- finalize --------------------------------------------------------------------------
    def finalize(self, results: dict[str, TaskResult]) -> None:
        shards = sorted((s for r in results.values() for s in r.extra.get("shards", [])), key=lambda s: s["path"])
        tokenizer = self._load().info.to_json() | {"add_bos": self.params.add_bos}
        manifest = build_manifest(shards, tokenizer, self._weights(),
                                  {"name": self.ctx.recipe.recipe.name, "hash": self.ctx.recipe.digest(),
                                   "path": self.ctx.recipe.path, "seed": self.ctx.recipe.recipe.seed},
                                  self.params.model_dump(mode="json"))
        self.workdir.write_json_atomic(self.workdir.path(TOKENS_DIR, TOKEN_MANIFEST), manifest)


def build_manifest(shards: list[dict[str, Any]], tokenizer: dict[str, Any], weights: dict[str, float],
                   recipe: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The token manifest: shards, per-source totals, and each source's share of the training mix.

    A source's share is weight x tokens over the sum of weight x tokens: the weight is a per-token
    sampling multiplier (4.0 = each token of the source is seen four times as often as at weight 1).
    """
    sources: dict[str, dict[str, Any]] = {}
    for source in weights:
        own = [s for s in shards if s["source"] == source]
        sources[source] = {"documents": sum(s["documents"] for s in own), "tokens": sum(s["tokens"] for s in own),
                           "shards": len(own), "weight": weights[source]}
    weighted = {s: v["tokens"] * v["weight"] for s, v in sources.items()}
    total = sum(weighted.values())
    for source, values in sources.items():
        values["share"] = weighted[source] / total if total else 0.0
    return {"version": MANIFEST_VERSION, "tokenizer": tokenizer, "shards": shards, "sources": sources,
            "recipe": recipe, "params": params,
            "totals": {"documents": sum(v["documents"] for v in sources.values()),
                       "tokens": sum(v["tokens"] for v in sources.values())},
            "share_definition": "weight * tokens / sum(weight * tokens)"}
