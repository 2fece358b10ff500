"""Transformer classifiers through the real loading code: tiny random models saved in the exact
layouts of nvidia/quality-classifier-deberta and HuggingFaceFW/fineweb-edu-classifier (plus a
plain 3-label BERT), scored through the classify stage, with length-sorted batching."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from classifiers.batching import make_batches, padding_fraction
from classifiers.locate import local_model_folder
from classifiers.tiny import build_fineweb_edu, build_nemo_quality, spam_texts, wiki_texts
from classifiers.transformer import QualityModel, TransformerScorer, resolve_precision
from pipeline.manifest import load_recipe
from pipeline.runner import build_stages, run_recipe
from pipeline.stage import StageError
from pipeline.workdir import Workdir
from tests.upstream_fixtures import LAYOUT, write_recipe

HUGE = "lorem ipsum dolor " * 600_000  # ~10 MB


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core machine: a second intra-op thread makes them ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf_models")
    texts = wiki_texts(150) + spam_texts(50)
    return {"nemo": build_nemo_quality(root / "nemo", texts), "fwe": build_fineweb_edu(root / "fwe", texts),
            "bert3": build_fineweb_edu(root / "bert3", texts, num_labels=3)}


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return [t[:300] for t in wiki_texts(16, offset=3000)] + spam_texts(6, seed=4) + ["", HUGE]


def test_nemo_layout_and_model_card_inference_agree_with_batched_scoring(models, docs):
    folder = models["nemo"]
    files = {p.name for p in folder.iterdir()}
    assert files >= {"config.json", "model.safetensors", "spm.model", "tokenizer_config.json"}
    config = json.loads((folder / "config.json").read_text())
    assert set(config) == {"base_model", "fc_dropout", "id2label", "label2id", "max_len"}
    assert config["id2label"] == {"0": "High", "1": "Medium", "2": "Low"}
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        names = set(handle.keys())
    assert {"fc.weight", "fc.bias"} <= names and all(n.startswith(("model.", "fc.")) for n in names)

    # the model card's code path: from_pretrained, one document at a time, padding="longest"
    model = QualityModel.from_pretrained(str(folder)).eval()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    docs = docs[:-1]  # the 10 MB one is covered by the truncation test; a 1024-token forward is slow on CPU
    texts = [d[:6000] for d in docs]
    expected = []
    with torch.no_grad():
        for text in texts:
            enc = tokenizer([text], return_tensors="pt", padding="longest", truncation=True, max_length=1024)
            expected.append(model(enc["input_ids"], enc["attention_mask"])[0].numpy())
    scorer = TransformerScorer("nemo_quality", folder, 6000, 1024, batch_size=5)
    out = scorer.score(docs)
    probs = np.array(out["prob"].to_pylist())
    np.testing.assert_allclose(probs, np.array(expected), atol=2e-5)
    assert out["pred"].to_pylist() == [["High", "Medium", "Low"][i] for i in np.argmax(expected, axis=1)]
    assert len(set(out["pred"].to_pylist())) > 1, "random weights should still separate some documents"
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_long_documents_are_cut_before_the_tokenizer(models, docs):
    scorer = TransformerScorer("nemo_quality", models["nemo"], 6000, 1024, batch_size=8)
    seen: list[int] = []
    inner = scorer.tokenizer

    class Spy:
        def __call__(self, texts, **kwargs):
            seen.extend(len(t) for t in texts)
            return inner(texts, **kwargs)

        def __getattr__(self, name):
            return getattr(inner, name)

    scorer.tokenizer = Spy()
    ids = scorer.tokenize(docs)
    assert max(seen) == 6000 and len(ids[-1]) == 1024 and len(ids[-2]) == 2  # [CLS] [SEP] for empty text
    fwe = TransformerScorer("fineweb_edu", models["fwe"], None, 512, batch_size=8)
    assert fwe.max_chars == 512 * 32 and len(fwe.tokenize([HUGE])[0]) == 512


def test_length_sorted_batches_pad_less_and_restore_order(models, docs):
    sorted_scorer = TransformerScorer("nemo_quality", models["nemo"], 6000, 1024, batch_size=4)
    arrival_scorer = TransformerScorer("nemo_quality", models["nemo"], 6000, 1024, batch_size=4, sort_by_length=False)
    texts = docs[:-1]  # the 1024-token document alone makes every arrival batch with it long
    a, b = sorted_scorer.outputs(texts), arrival_scorer.outputs(texts)
    np.testing.assert_allclose(a, b, atol=2e-5)
    assert sorted_scorer.last_padding_fraction < arrival_scorer.last_padding_fraction
    lengths = np.array([5, 1, 4, 4, 2])
    batches = make_batches(lengths, 2)
    assert [b.tolist() for b in batches] == [[0, 2], [3, 4], [1]]  # longest first, ties in arrival order
    assert padding_fraction(lengths, batches) == pytest.approx(1 - 16 / (10 + 8 + 1))


def test_fineweb_edu_regression_scores(models, docs):
    out = TransformerScorer("fineweb_edu", models["fwe"], None, 512, batch_size=8).score(docs)
    scores, ints = out["score"].to_pylist(), out["int_score"].to_pylist()
    assert ints == [int(round(max(0.0, min(s, 5.0)))) for s in scores]
    assert len(set(np.round(scores, 4))) > 5


def test_precision_follows_the_hardware(monkeypatch):
    assert resolve_precision("auto", "auto") == ("cpu", torch.float32)
    assert resolve_precision("cpu", "bfloat16") == ("cpu", torch.bfloat16)
    with pytest.raises(StageError, match="sees no GPU"):
        resolve_precision("cuda", "auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", "auto") == ("cuda", torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto", "auto") == ("cuda", torch.float16)


# ---- through the stage -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory, docs) -> Path:
    root = tmp_path_factory.mktemp("hf_upstream")
    pattern = LAYOUT["zyda-1"][0]
    for i, texts in enumerate([docs[::2], docs[1::2]]):
        path = root / pattern.format(i=i)
        path.parent.mkdir(parents=True, exist_ok=True)
        n = len(texts)
        pq.write_table(pa.table({"text": texts, "source": ["c4"] * n, "filtering_features": ["{}"] * n,
                                 "source_other": ["{}"] * n}), path)
    return root


def _recipe(folder: Path, corpus: Path, model: dict, **params) -> Path:
    stage = {"id": "quality", "type": "classify", "sources": ["zyda"],
             "params": {"model": model, "batch_size": 8, **params}}
    return write_recipe(folder, corpus, [{"id": "ingest", "type": "ingest"}, stage], sources=["zyda-1"])


def _read(folder: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("*.parquet"))])


def test_nemo_classifier_stage_on_ray_actors(tmp_path, corpus, models, docs, ray_local):
    recipe = _recipe(tmp_path / "r", corpus, {"kind": "nemo_quality", "path": str(models["nemo"])},
                     keep={"labels": ["High"]}, max_tokens=128)
    workdir = tmp_path / "w"
    stats = run_recipe(load_recipe(recipe), str(workdir), executor="ray")[-1].stats["zyda"]
    kept, removed = _read(workdir / "quality" / "zyda"), _read(workdir / "removed" / "quality" / "zyda")
    assert stats.docs_in == len(docs) == kept.num_rows + removed.num_rows
    assert kept.schema.field("quality_prob").type == pa.list_(pa.float32())
    assert set(kept["quality_pred"].to_pylist()) == {"High"}
    assert {r.split("=")[1] for r in removed["reason"].to_pylist()} <= {"Medium not in [High]", "Low not in [High]"}
    # the stage's scores are the scorer's scores, on kept and dropped documents alike
    direct = TransformerScorer("nemo_quality", models["nemo"], 6000, 128, batch_size=8).score(docs)
    by_text = dict(zip(docs, direct["prob"].to_pylist()))
    for table in (kept, removed):
        for text, prob in zip(table["text"].to_pylist(), table["quality_prob"].to_pylist()):
            np.testing.assert_allclose(prob, by_text[text], atol=2e-5)
    markers = [json.loads(p.read_text()) for p in (workdir / "_state" / "quality").glob("zyda-*.json")]
    assert sum(m["extra"]["model_calls"] for m in markers) == sum(-(-m["stats"]["zyda"]["docs_in"] // 8)
                                                                  for m in markers)


def test_fineweb_edu_and_generic_classifiers_in_the_stage(tmp_path, corpus, models, docs, ray_local):
    fwe = _recipe(tmp_path / "r1", corpus, {"kind": "fineweb_edu", "path": str(models["fwe"])},
                  keep={"column": "int_score", "min": 1})
    run_recipe(load_recipe(fwe, max_files=1), str(tmp_path / "w1"), executor="ray")  # one file: one actor
    kept, removed = _read(tmp_path / "w1" / "quality" / "zyda"), _read(tmp_path / "w1" / "removed" / "quality" / "zyda")
    assert min(kept["int_score"].to_pylist(), default=1) >= 1
    assert set(removed["reason"].to_pylist()) <= {"int_score < 1"}
    assert kept.num_rows + removed.num_rows == len(docs[::2])
    direct = TransformerScorer("fineweb_edu", models["fwe"], None, 512, batch_size=8).score(docs[::2])
    by_text = dict(zip(docs[::2], direct["score"].to_pylist()))
    for text, score in zip(kept["text"].to_pylist() + removed["text"].to_pylist(),
                           kept["score"].to_pylist() + removed["score"].to_pylist()):
        assert score == pytest.approx(by_text[text], abs=1e-5)

    predicted = TransformerScorer("hf_sequence", models["bert3"], None, 512, batch_size=8).score(docs)["pred"]
    common = Counter(predicted.to_pylist()).most_common(1)[0]
    generic = _recipe(tmp_path / "r2", corpus, {"kind": "hf_sequence", "path": str(models["bert3"])},
                      columns={"pred": "topic", "prob": "topic_prob"}, keep={"labels": [common[0]]})
    run_recipe(load_recipe(generic), str(tmp_path / "w2"), executor="local")
    kept = _read(tmp_path / "w2" / "quality" / "zyda")
    assert set(kept["topic"].to_pylist()) == {common[0]} and kept.num_rows == common[1]
    assert all(len(p) == 3 for p in kept["topic_prob"].to_pylist())
    assert set(predicted.to_pylist()) <= {"label_0", "label_1", "label_2"}  # names from the config's id2label


def _validate(tmp_path: Path, corpus: Path, model: dict, **params) -> None:
    recipe = load_recipe(_recipe(tmp_path / "r", corpus, model, **params))
    stage = dict((s.stage_id, s) for s, _ in build_stages(recipe, Workdir(str(tmp_path / "w"))))["quality"]
    stage.validate()


def test_bad_transformer_models_are_refused_at_startup(tmp_path, corpus, models, monkeypatch):
    nemo = {"kind": "nemo_quality", "path": str(models["nemo"])}
    _validate(tmp_path / "ok", corpus, nemo, keep={"labels": ["High", "Medium"]})
    with pytest.raises(StageError, match=r"keep labels \['Excellent'\] are not labels of model"):
        _validate(tmp_path / "a", corpus, nemo, keep={"labels": ["Excellent"]})
    with pytest.raises(StageError, match="a threshold needs a numeric score"):
        _validate(tmp_path / "b", corpus, nemo, keep={"min": 0.5})
    with pytest.raises(StageError, match="regression model"):
        _validate(tmp_path / "c", corpus, {"kind": "fineweb_edu", "path": str(models["fwe"])}, keep={"labels": ["x"]})
    with pytest.raises(StageError, match="does not exist"):
        _validate(tmp_path / "d", corpus, {"kind": "nemo_quality", "path": str(tmp_path / "missing")})
    with pytest.raises(StageError, match="lacks .*base_model"):
        _validate(tmp_path / "e", corpus, {"kind": "nemo_quality", "path": str(models["fwe"])})

    with pytest.raises(StageError, match="max_tokens 1024 exceeds the 512 positions"):
        _validate(tmp_path / "i", corpus, {"kind": "fineweb_edu", "path": str(models["fwe"])}, max_tokens=1024)

    broken = tmp_path / "broken"
    shutil.copytree(models["nemo"], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])
    with pytest.raises(StageError, match="truncated"):
        _validate(tmp_path / "f", corpus, {"kind": "nemo_quality", "path": str(broken)})
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(StageError, match="not a readable safetensors file"):
        _validate(tmp_path / "g", corpus, {"kind": "nemo_quality", "path": str(broken)})

    # weights of another architecture: the fc head is missing
    shutil.copy(models["fwe"] / "model.safetensors", weights)
    with pytest.raises(StageError, match="lacks .* weights the model needs"):
        _validate(tmp_path / "h", corpus, {"kind": "nemo_quality", "path": str(broken)})

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StageError, match="HF_HUB_OFFLINE"):
        local_model_folder("nvidia/quality-classifier-deberta-not-cached")


def test_gpu_actors_are_requested_only_when_the_cluster_has_gpus(tmp_path, corpus, models, monkeypatch):
    from classifiers.stage import ClassifyStage

    recipe = load_recipe(_recipe(tmp_path / "r", corpus, {"kind": "nemo_quality", "path": str(models["nemo"])}))
    stage = dict((s.stage_id, s) for s, _ in build_stages(recipe, Workdir(str(tmp_path / "w"))))["quality"]
    assert stage.resources() == {"num_cpus": 1}
    monkeypatch.setattr(ClassifyStage, "_gpus_available", lambda self: True)
    assert stage.resources() == {"num_cpus": 1, "num_gpus": 1}
