"""Token shards + manifest.json written exactly as the tokenize stage's contract says, for trainer tests."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

EOS = 2


def synthetic_documents(source_index: int, count: int, rng: np.random.Generator, mean_len: int = 40,
                        vocab: int = 500) -> list[list[int]]:
    """Documents whose first token names them (unique across sources) and whose last token is EOS."""
    docs = []
    for i in range(count):
        length = int(rng.integers(max(2, mean_len // 2), mean_len * 3 // 2))
        body = rng.integers(3 + 100 * source_index, 3 + 100 * source_index + 100, size=length - 2).tolist()
        docs.append([vocab + 1000 * source_index + i, *body, EOS])
    return docs


def write_token_workdir(
    root: Path,
    docs: dict[str, Sequence[Sequence[int]]],
    weights: dict[str, float] | None = None,
    docs_per_shard: int = 50,
    vocab_size: int = 32000,
    token_type: pa.DataType = pa.uint16(),
) -> Path:
    """WORKDIR/tokens/<source>/part-....parquet (zstd) and WORKDIR/tokens/manifest.json."""
    weights = weights or {s: 1.0 for s in docs}
    shards, sources = [], {}
    for source, documents in docs.items():
        folder = root / "tokens" / source
        folder.mkdir(parents=True, exist_ok=True)
        n_tokens = 0
        for k, start in enumerate(range(0, len(documents), docs_per_shard)):
            part = documents[start : start + docs_per_shard]
            table = pa.table({
                "id": pa.array([f"{source}-{start + i:07d}" for i in range(len(part))], pa.string()),
                "source": pa.array([source] * len(part), pa.string()),
                "input_ids": pa.array([list(d) for d in part], pa.list_(token_type)),
                "num_tokens": pa.array([len(d) for d in part], pa.int32()),
            })
            buffer = io.BytesIO()
            pq.write_table(table, buffer, compression="zstd")
            data = buffer.getvalue()
            rel = f"tokens/{source}/part-{k:04d}-0000.parquet"
            (root / rel).write_bytes(data)
            tokens = sum(len(d) for d in part)
            n_tokens += tokens
            shards.append({"path": rel, "source": source, "documents": len(part), "tokens": tokens,
                           "sha256": hashlib.sha256(data).hexdigest()})
        sources[source] = {"documents": len(documents), "tokens": n_tokens, "weight": weights[source]}
    total = sum(v["tokens"] * v["weight"] for v in sources.values())
    for values in sources.values():
        values["share"] = values["tokens"] * values["weight"] / total
    manifest = {
        "version": 1,
        "tokenizer": {"name": "fixture", "vocab_size": vocab_size, "bos_id": 1, "eos_id": EOS, "add_bos": False,
                      "sha256": "0" * 64},
        "shards": shards,
        "sources": sources,
        "recipe": {"name": "fixture", "hash": "0" * 16},
    }
    (root / "tokens" / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return root

