"""Token loader: shard splitting, packing with document boundaries, mixture, determinism, exact resume."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tests.token_fixtures import EOS, synthetic_documents, write_token_workdir
from training.data import DataError, Shard, TokenLoader, TokenManifest, assign_units

VOCAB = 500  # first tokens >= VOCAB name documents


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    docs = {"big": synthetic_documents(0, 120, rng, mean_len=30), "small": synthetic_documents(1, 45, rng, mean_len=60)}
    return write_token_workdir(tmp_path / "work", docs, weights={"big": 1.0, "small": 3.0}, docs_per_shard=20)


def take(loader: TokenLoader, n: int) -> list[dict[str, np.ndarray]]:
    return [{k: v.numpy().copy() for k, v in next(loader).items()} for _ in range(n)]


def test_assign_units_gives_every_document_one_owner():
    for n_shards, docs_each in [(1, 7), (3, 5), (5, 4), (8, 3)]:
        shards = [(i, Shard(f"p{i}", "s", docs_each, 10, "")) for i in range(n_shards)]
        for streams in range(1, 7):
            owners = Counter()
            for stream in range(streams):
                for unit in assign_units(shards, stream, streams):
                    for doc in range(unit.offset, docs_each, unit.stride):
                        owners[(unit.shard, doc)] += 1
            assert owners == Counter({(i, d): 1 for i in range(n_shards) for d in range(docs_each)}), (n_shards, streams)


def test_windows_are_packed_documents_with_boundaries(corpus):
    loader = TokenLoader(str(corpus), seq_len=64, batch_size=3, seed=1)
    batches = take(loader, 6)
    for b in batches:
        assert b["input_ids"].shape == b["labels"].shape == b["segment_ids"].shape == (3, 64)
        np.testing.assert_array_equal(b["input_ids"][:, 1:], b["labels"][:, :-1])
        # a new document starts exactly after an EOS
        new_doc = b["segment_ids"][:, 1:] != b["segment_ids"][:, :-1]
        np.testing.assert_array_equal(new_doc, b["input_ids"][:, :-1] == EOS)
        assert (b["segment_ids"][:, 0] == 0).all()
    # consecutive windows continue the stream: last label of one is the first input of the next
    flat = [row for b in batches for row in zip(b["input_ids"], b["labels"])]
    for (_, labels), (inputs, _) in zip(flat, flat[1:]):
        assert labels[-1] == inputs[0]


def test_same_seed_same_batches_other_seed_other_batches(corpus):
    a = take(TokenLoader(str(corpus), 32, 2, seed=5), 5)
    b = take(TokenLoader(str(corpus), 32, 2, seed=5), 5)
    c = take(TokenLoader(str(corpus), 32, 2, seed=6), 5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["input_ids"], y["input_ids"])
    assert any(not np.array_equal(x["input_ids"], z["input_ids"]) for x, z in zip(a, c))


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_exactly(corpus, workers):
    full = take(TokenLoader(str(corpus), 48, 2, seed=3, num_workers=workers), 11)
    first = TokenLoader(str(corpus), 48, 2, seed=3, num_workers=workers)
    head = take(first, 5)
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint stores
    resumed = TokenLoader(str(corpus), 48, 2, seed=3, num_workers=workers)
    resumed.load_state_dict(state)
    tail = take(resumed, 6)
    for x, y in zip(head + tail, full):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_resume_refuses_a_different_layout(corpus):
    state = TokenLoader(str(corpus), 48, 2, seed=3).state_dict()
    with pytest.raises(DataError, match="same world size"):
        TokenLoader(str(corpus), 48, 4, seed=3).load_state_dict(state)


def test_sources_follow_the_mixture_shares(corpus):
    manifest = json.loads((corpus / "tokens" / "manifest.json").read_text())
    loader = TokenLoader(str(corpus), 128, 4, seed=0)
    counts = Counter()
    for b in take(loader, 60):
        ids = b["input_ids"]
        counts["big"] += int(((ids >= 3) & (ids < 103)).sum())
        counts["small"] += int(((ids >= 103) & (ids < 203)).sum())
    share = counts["small"] / (counts["big"] + counts["small"])
    assert abs(share - manifest["sources"]["small"]["share"]) < 0.05
    # the override changes it
    loader = TokenLoader(str(corpus), 128, 4, seed=0, weights={"big": 1.0, "small": 0.0})
    assert all(((b["input_ids"] >= 103) & (b["input_ids"] < 203)).sum() == 0 for b in take(loader, 5))


def doc_names(batches: list[dict[str, np.ndarray]]) -> set[int]:
    return {int(t) for b in batches for t in b["input_ids"].ravel() if t >= VOCAB}


def test_ranks_and_workers_read_disjoint_documents_and_cover_the_corpus(corpus):
    all_docs = {VOCAB + i for i in range(120)} | {VOCAB + 1000 + i for i in range(45)}
    seen = []
    for rank in range(2):
        loader = TokenLoader(str(corpus), 16, 1, seed=0, rank=rank, world_size=2, num_workers=0,
                             weights={"big": 1.0, "small": 1.0})
        seen.append(doc_names(take(loader, 40)))
    assert not seen[0] & seen[1]  # first epoch of each rank: no shared document
    many = TokenLoader(str(corpus), 64, 4, seed=0)
    assert doc_names(take(many, 60)) == all_docs  # > 2 epochs of tokens: every document was used


def test_uint32_shards_are_read(tmp_path):
    docs = {"s": [[70000, 5, 6, EOS], [70001, 7, EOS]] * 10}
    root = write_token_workdir(tmp_path, docs, token_type=pa.uint32(), vocab_size=80000)
    batch = next(TokenLoader(str(root), 8, 1))
    assert batch["input_ids"].max() >= 70000


def test_bad_data_is_named(corpus, tmp_path):
    with pytest.raises(DataError, match="no token manifest"):
        TokenManifest.load(str(tmp_path / "empty"))
    with pytest.raises(DataError, match="does not have"):
        TokenManifest.load(str(corpus), weights={"nope": 1.0})
    with pytest.raises(DataError, match="owns no documents"):
        TokenLoader(str(corpus), 8, 1, world_size=200, rank=199)
    shard = next((corpus / "tokens" / "big").glob("*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    loader = TokenLoader(str(corpus), 512, 8, weights={"big": 1.0, "small": 0.0})
    with pytest.raises(DataError, match="sha256"):
        take(loader, 3)
    bad = write_token_workdir(tmp_path / "int64", {"s": [[5, EOS]] * 3}, token_type=pa.int64())
    with pytest.raises(DataError, match="list<uint16> or list<uint32>"):
        next(TokenLoader(str(bad), 4, 1))
