"""The tokenize stage: the token shard contract, round trip, empties, oversized documents, determinism."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.cli import main
from pipeline.manifest import load_recipe
from pipeline.runner import run_recipe
from pipeline.stage import StageError
from pipeline.tokenize import TOKEN_MANIFEST
from pipeline.tokenizer import MISTRAL_BUILTIN, decode, load_tokenizer
from tests.test_tokenizer import wiki_documents
from tests.upstream_fixtures import LAYOUT, tree_bytes, write_recipe

SHARD_TOKENS = 3000
FILES, ROWS = 3, 40
WIKI = wiki_documents(FILES * ROWS * 4 + 64, seed=3)
SHARD_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("input_ids", pa.list_(pa.uint16())),
                          ("num_tokens", pa.int32())])


def corpus_text(source: str, file_index: int, row: int) -> str:
    """Wikipedia extracts, plus one empty document and one longer than a shard in each source."""
    if (file_index, row) == (0, 3):
        return ""
    if (file_index, row) == (1, 5):
        return "\n\n".join(WIKI[-60:])
    offset = ["fwe", "dclm", "zyda", "dolma"].index(source) * FILES * ROWS
    return WIKI[offset + file_index * ROWS + row]


def write_corpus(root: Path) -> Path:
    for pattern, _, writer in LAYOUT.values():
        for i in range(FILES):
            writer(root / pattern.format(i=i), i, ROWS, text=corpus_text)
    return root


def tokens_stage(stage_id: str = "tokens", **params) -> dict:
    return {"id": stage_id, "type": "tokenize",
            "params": {"tokenizer": MISTRAL_BUILTIN, "shard_tokens": SHARD_TOKENS, "shards_per_task": 2, **params}}


def make_recipe(folder: Path, data: Path, stages: list[dict], **kwargs) -> Path:
    return write_recipe(folder, data, [{"id": "ingest", "type": "ingest"}] + stages,
                        execution={"batch_size": 16, "target_part_bytes": 4096}, **kwargs)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("upstream"))


@pytest.fixture(scope="module")
def run(tmp_path_factory, data) -> Path:
    """One local run with the default options (no shuffle)."""
    root = tmp_path_factory.mktemp("run")
    recipe = make_recipe(root / "recipe", data, [tokens_stage(batch_size=7)])
    run_recipe(load_recipe(recipe), str(root / "work"), executor="local")
    return root / "work"


def ingested(work: Path) -> dict[str, dict]:
    rows = {}
    for path in sorted((work / "ingest").rglob("part-*.parquet")):
        for row in pq.read_table(path, columns=["id", "text", "source"]).to_pylist():
            rows[row["id"]] = row
    return rows


def shard_rows(work: Path, manifest: dict) -> list[dict]:
    return [row for shard in manifest["shards"] for row in pq.read_table(work / shard["path"]).to_pylist()]


def test_shards_and_manifest_follow_the_contract(run):
    manifest = json.loads((run / "tokens" / TOKEN_MANIFEST).read_text())
    assert manifest["version"] == 1
    assert {k: manifest["tokenizer"][k] for k in ("name", "vocab_size", "bos_id", "eos_id", "add_bos")} == \
        {"name": MISTRAL_BUILTIN, "vocab_size": 32000, "bos_id": 1, "eos_id": 2, "add_bos": False}
    assert manifest["tokenizer"]["sha256"] == load_tokenizer(MISTRAL_BUILTIN).info.sha256
    recipe = load_recipe(run.parent / "recipe" / "recipe.yaml")
    assert manifest["recipe"]["name"] == "fixture" and manifest["recipe"]["hash"] == recipe.digest()
    assert set(manifest["sources"]) == {"fwe3", "dclm", "zyda", "dolma_cc"}
    for shard in manifest["shards"]:
        path = run / shard["path"]
        assert re.fullmatch(rf"tokens/{shard['source']}/part-[a-z0-9_]+-\d{{5}}-\d{{4}}\.parquet", shard["path"])
        assert hashlib.sha256(path.read_bytes()).hexdigest() == shard["sha256"]
        meta = pq.ParquetFile(path).metadata
        assert meta.row_group(0).column(2).compression == "ZSTD"
        table = pq.read_table(path)
        assert table.schema == SHARD_SCHEMA
        counts = table["num_tokens"].to_numpy()
        ids = table["input_ids"].to_pylist()
        assert [len(r) for r in ids] == counts.tolist()
        assert all(r[-1] == 2 and 2 not in r[:-1] for r in ids)
        assert (table.num_rows, int(counts.sum())) == (shard["documents"], shard["tokens"])
        assert set(table["source"].to_pylist()) == {shard["source"]}
        assert shard["tokens"] <= SHARD_TOKENS or shard["documents"] == 1
    weighted = {s: v["tokens"] * v["weight"] for s, v in manifest["sources"].items()}
    for source, values in manifest["sources"].items():
        own = [s for s in manifest["shards"] if s["source"] == source]
        assert values["tokens"] == sum(s["tokens"] for s in own) and values["documents"] == sum(s["documents"] for s in own)
        assert values["weight"] == {"dclm": 4.0, "fwe3": 4.0, "zyda": 0.16, "dolma_cc": 0.24}[source]
        assert values["share"] == pytest.approx(weighted[source] / sum(weighted.values()))
    assert sum(v["share"] for v in manifest["sources"].values()) == pytest.approx(1.0)


def test_every_document_decodes_back_to_its_text(run):
    manifest = json.loads((run / "tokens" / TOKEN_MANIFEST).read_text())
    docs = ingested(run)
    rows = shard_rows(run, manifest)
    assert len({r["id"] for r in rows}) == len(rows)
    assert {r["id"] for r in rows} == {i for i, d in docs.items() if d["text"]}
    loaded = load_tokenizer(MISTRAL_BUILTIN)
    for row in rows:
        assert docs[row["id"]]["source"] == row["source"]
        assert decode(loaded, row["input_ids"]) == docs[row["id"]]["text"].replace("\u2581", " ")


def test_without_shuffle_documents_keep_their_input_order(run):
    manifest = json.loads((run / "tokens" / TOKEN_MANIFEST).read_text())
    for source in manifest["sources"]:
        ids = [r["id"] for r in shard_rows(run, manifest) if r["source"] == source]
        assert ids == sorted(ids)


def test_empty_documents_are_skipped_and_recorded(run):
    removed = pq.read_table(sorted((run / "removed" / "tokens" / "dclm").glob("part-*.parquet"))[0]).to_pylist()
    assert removed == [{"id": "dclm-00000-0000003", "text": "", "reason": "empty"}]
    marker = json.loads((run / "_state" / "tokens" / "_stage.json").read_text())
    for stats in marker["stats"].values():
        assert stats["dropped"] == {"empty": 1}
        assert stats["docs_in"] == FILES * ROWS == stats["docs_out"] + 1


def test_a_document_longer_than_the_shard_target_gets_a_shard_of_its_own(run):
    manifest = json.loads((run / "tokens" / TOKEN_MANIFEST).read_text())
    long_shards = [s for s in manifest["shards"] if s["tokens"] > SHARD_TOKENS]
    assert sorted(s["source"] for s in long_shards) == ["dclm", "dolma_cc", "fwe3", "zyda"]
    for shard in long_shards:
        assert shard["documents"] == 1
        assert pq.read_table(run / shard["path"])["id"][0].as_py().endswith("-00001-0000005")
    markers = [json.loads(p.read_text()) for p in (run / "_state" / "tokens").glob("[!_]*.json")]
    assert sum(m["extra"]["oversized_documents"] for m in markers) == 4


def test_eos_only_keeps_empty_documents_and_add_bos_starts_each_one(tmp_path, data):
    recipe = make_recipe(tmp_path, data, [tokens_stage(empty_documents="eos_only", add_bos=True)],
                         sources=["dclm-baseline-1.0"])
    run_recipe(load_recipe(recipe), str(tmp_path / "work"), executor="local")
    manifest = json.loads((tmp_path / "work" / "tokens" / TOKEN_MANIFEST).read_text())
    rows = {r["id"]: r for r in shard_rows(tmp_path / "work", manifest)}
    assert len(rows) == FILES * ROWS
    assert rows["dclm-00000-0000003"]["input_ids"] == [1, 2]
    assert all(r["input_ids"][0] == 1 and r["input_ids"][-1] == 2 for r in rows.values())
    assert manifest["sources"]["dclm"]["share"] == 1.0 and manifest["tokenizer"]["add_bos"] is True


def test_shuffled_runs_are_byte_identical_on_local_and_ray(tmp_path, data, ray_local):
    trees = []
    for executor in ("local", "ray"):
        folder = tmp_path / executor
        recipe = make_recipe(tmp_path / "recipe", data, [tokens_stage(shuffle=True)])
        run_recipe(load_recipe(recipe), str(folder), executor=executor, num_cpus=2)
        trees.append(tree_bytes(folder, "tokens"))
    assert trees[0] == trees[1] and len(trees[0]) > 8
    manifest = json.loads(trees[0]["tokens/manifest.json"])
    rows = shard_rows(tmp_path / "local", manifest)
    ids = [r["id"] for r in rows if r["source"] == "fwe3"]
    assert ids != sorted(ids) and len(ids) == FILES * ROWS - 1
    first_shard = pq.read_table(tmp_path / "local" / manifest["shards"][0]["path"])["id"].to_pylist()
    assert len({i.rsplit("-", 1)[0] for i in first_shard}) > 1  # documents of several input files mix


def test_bad_configurations_fail_before_any_task(tmp_path, data):
    cases = {
        "must have id 'tokens'": ([tokens_stage(stage_id="tok")], {}),
        "mixture.*no weight for \\['dclm'\\]": ([tokens_stage()], {"sources": ["zyda-1", "dclm-baseline-1.0"]}),
        "unknown tokenizer.*offline.*mistral-v0.1": ([tokens_stage(tokenizer="nobody/none")], {}),
    }
    for index, (pattern, (stages, kwargs)) in enumerate(cases.items()):
        folder = tmp_path / str(index)
        recipe_path = make_recipe(folder, data, stages, **kwargs)
        if "sources" in kwargs:
            text = recipe_path.read_text().replace("dclm: 4.0", "zz: 1.0")
            recipe_path.write_text(text)
        with pytest.raises(StageError, match=pattern):
            run_recipe(load_recipe(recipe_path), str(folder / "work"), executor="local")
        assert not (folder / "work" / "tokens").exists()


def test_tokenizing_before_ingest_finished_is_refused(tmp_path, data):
    recipe = make_recipe(tmp_path, data, [tokens_stage()])
    with pytest.raises(StageError, match="'ingest' has not finished"):
        run_recipe(load_recipe(recipe), str(tmp_path / "work"), stages=["tokens"], executor="local")


def test_tokens_inspect_prints_counts_and_text_and_verifies(run, capsys, tmp_path):
    assert main(["tokens", "inspect", str(run), "--documents", "1", "--verify"]) == 0
    out = capsys.readouterr().out
    manifest = json.loads((run / "tokens" / TOKEN_MANIFEST).read_text())
    first = pq.read_table(run / manifest["shards"][0]["path"]).to_pylist()[0]
    assert f"{manifest['totals']['tokens']:,}" in out and "all match the manifest" in out
    assert first["id"] in out and ingested(run)[first["id"]]["text"][:60] in out
    copy = tmp_path / "copy"
    for rel, data in tree_bytes(run, "tokens").items():
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy / rel).write_bytes(data)
    bad = copy / manifest["shards"][1]["path"]
    table = pq.read_table(bad)
    pq.write_table(table.slice(1), bad, compression="zstd")
    assert main(["tokens", "inspect", str(copy), "--documents", "0", "--verify"]) == 1
    assert "sha256 differs" in capsys.readouterr().err
    assert main(["tokens", "inspect", str(tmp_path / "nowhere")]) == 2
    assert not (tmp_path / "nowhere").exists()


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory) -> Path:
    """The demo sample through ingest and the demo recipe's own `tokens` stage (its other stages are
    other modules' business: they only drop documents)."""
    from pipeline.sample import build_sample

    root = tmp_path_factory.mktemp("sample")
    build_sample(root / "sample", seed=5, scale=0.3)
    repo = Path(__file__).resolve().parents[1]
    data = yaml.safe_load((repo / "manifests" / "sample.yaml").read_text())
    data["stages"] = [s for s in data["stages"] if s["id"] in ("ingest", "tokens")]
    for ref in data["sources"]:
        ref["manifest"] = str(repo / "manifests" / ref["manifest"])
    (root / "recipe.yaml").write_text(yaml.safe_dump(data))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZYDA_SAMPLE_DIR", str(root / "sample"))
        run_recipe(load_recipe(root / "recipe.yaml"), str(root / "work"), executor="local")
    return root / "work"


def test_sample_recipe_round_trips_every_document(sample_run):
    """The demo's own recipe: every document of the sample decodes back to its text."""
    manifest = json.loads((sample_run / "tokens" / TOKEN_MANIFEST).read_text())
    docs = ingested(sample_run)
    rows = shard_rows(sample_run, manifest)
    assert len(rows) == sum(1 for d in docs.values() if d["text"]) > 500
    loaded = load_tokenizer(MISTRAL_BUILTIN)
    texts = loaded.tokenizer.decode_batch([r["input_ids"] for r in rows], skip_special_tokens=True)
    mismatched = [r["id"] for r, text in zip(rows, texts) if text != docs[r["id"]]["text"].replace("\u2581", " ")]
    assert mismatched == []
    counts = np.array([r["num_tokens"] for r in rows])
    assert manifest["totals"]["tokens"] == int(counts.sum())


def test_shard_writer_streams_row_groups_and_cuts_at_the_target(tmp_path):
    from pipeline.token_shards import ROW_GROUP_TOKENS, ShardWriter
    from pipeline.workdir import Workdir

    rows = 20_000
    counts = np.full(rows, 100, dtype=np.int32)
    counts[17_000] = 4_000_000  # longer than the target: a shard of its own
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    table = pa.table({"id": [f"d{i:06d}" for i in range(rows)], "source": ["s"] * rows,
                      "input_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.full(offsets[-1], 2, np.uint16))),
                      "num_tokens": pa.array(counts)})
    writer = ShardWriter(Workdir(str(tmp_path)), str(tmp_path / "tokens" / "s"), "s-00000", "s", target=1_500_000)
    for start in range(0, rows, 777):
        writer.write(table.slice(start, 777))
    writer.close_shard()
    assert [(s["documents"], s["tokens"]) for s in writer.shards] == [(15_000, 1_500_000), (2_000, 200_000),
                                                                       (1, 4_000_000), (2_999, 299_900)]
    assert writer.oversized == 1
    first = pq.ParquetFile(tmp_path / writer.shards[0]["path"])
    groups = [first.metadata.row_group(i).num_rows * 100 for i in range(first.metadata.num_row_groups)]
    assert len(groups) == 2 and sum(groups) == 1_500_000
    assert ROW_GROUP_TOKENS <= groups[0] < ROW_GROUP_TOKENS + 777 * 100  # ends at the batch past the target
    for shard in writer.shards:
        data = (tmp_path / shard["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"] and len(data) == shard["bytes"]
    assert pa.concat_tables(pq.read_table(tmp_path / s["path"]) for s in writer.shards) == table
    assert not list((tmp_path / "tokens" / "s").glob(".tmp-*"))
