"""The dedup recipe stages end to end on the sample corpus: accounting, removed/ records, brute-force
exact dedup, ground-truth recall/precision, byte-identical outputs across partitions and executors."""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dedup.api import _recipe, _run, exact_dedup, fuzzy_dedup
from dedup.config import preset_config
from dedup.signatures import jaccard, shingle_sets
from dedup.synthetic import planted_corpus
from pipeline.manifest import load_recipe
from pipeline.runner import run_recipe
from pipeline.sample import build_sample
from pipeline.stage import StageError
from pipeline.workdir import Workdir

REPO = Path(__file__).resolve().parents[1]
RANKS = {"fwe3": 1, "dclm": 2, "zyda": 3, "dolma_cc": 4}

RECIPE = """
name: dedup-test
seed: 7
sources:
  - manifest: {repo}/manifests/sources/sample/fineweb-edu.yaml
  - manifest: {repo}/manifests/sources/sample/dclm.yaml
  - manifest: {repo}/manifests/sources/sample/zyda.yaml
  - manifest: {repo}/manifests/sources/sample/dolma-cc.yaml
execution: {{batch_size: 300, target_part_bytes: 200000}}
stages:
  - {{id: ingest, type: ingest}}
  - {{id: exact, type: exact_hash, params: {{partitions: {partitions}}}}}
  - {{id: exact_lsh, type: lsh}}
  - {{id: exact_cc, type: components, params: {{policy: zyda1, max_edges_in_process: {max_edges}}}}}
  - {{id: exact_dedup, type: dedup_remove}}
  - {{id: minhash, type: minhash, params: {{preset: zyda2, partitions: {partitions}}}}}
  - {{id: lsh, type: lsh}}
  - {{id: components, type: components, params: {{policy: zyda2, max_edges_in_process: {max_edges}}}}}
  - {{id: dedup, type: dedup_remove}}
"""


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sample")
    build_sample(folder, seed=0, scale=0.2)
    os.environ["ZYDA_SAMPLE_DIR"] = str(folder)
    return folder


def run(tmp: Path, partitions: int, max_edges: int, executor: str = "local") -> Path:
    recipe_path = tmp / "recipe.yaml"
    recipe_path.write_text(RECIPE.format(repo=REPO, partitions=partitions, max_edges=max_edges))
    run_recipe(load_recipe(recipe_path), str(tmp / "work"), executor=executor, num_cpus=2, interactive=False)
    return tmp / "work"


@pytest.fixture(scope="module")
def workdir(sample, tmp_path_factory) -> Path:
    return run(tmp_path_factory.mktemp("run"), partitions=3, max_edges=2_000_000)


def table(folder: Path) -> pa.Table:
    return pq.read_table(folder) if folder.exists() else pa.table({})


def test_every_document_is_kept_or_removed_with_its_reason(workdir):
    for stage, reason in (("exact_dedup", "exact_duplicate"), ("dedup", "minhash_duplicate")):
        kept, removed = table(workdir / stage), table(workdir / "removed" / stage)
        assert removed.num_rows > 0 and set(removed["reason"].to_pylist()) == {reason}
        assert removed["duplicate_of"].null_count == 0
        assert set(removed["duplicate_of"].to_pylist()) <= set(kept["id"].to_pylist())  # points at a kept doc
        assert not set(removed["id"].to_pylist()) & set(kept["id"].to_pylist())
        stage_in = table(workdir / ("ingest" if stage == "exact_dedup" else "exact_dedup"))
        assert kept.num_rows + removed.num_rows == stage_in.num_rows
        assert kept.column_names == stage_in.column_names  # kept documents pass through unchanged


def test_exact_stage_equals_brute_force_grouping(workdir):
    docs = table(workdir / "ingest").to_pylist()
    groups: dict[str, list[dict]] = defaultdict(list)
    for doc in docs:
        groups[doc["text"]].append(doc)
    expected = {}
    for members in groups.values():
        keep = min(members, key=lambda d: (RANKS[d["source"]], d["id"]))  # zyda1 policy
        expected.update({d["id"]: keep["id"] for d in members if d is not keep})
    removed = table(workdir / "removed" / "exact_dedup")
    assert dict(zip(removed["id"].to_pylist(), removed["duplicate_of"].to_pylist())) == expected


def test_cross_source_policy_and_ground_truth(workdir, sample):
    """zyda2 preset: recall of planted pairs above the threshold, precision of removals, by the ground truth."""
    truth = pq.read_table(sample / "ground_truth.parquet").to_pylist()
    by_id = {t["id"]: t for t in truth}
    docs = {d["id"]: d for d in table(workdir / "exact_dedup").to_pylist()}
    removed = {r["id"]: r for r in table(workdir / "removed" / "dedup").to_pylist()}
    for r in removed.values():  # only cross-source duplicates go, always to a better-ranked source
        target = docs[r["duplicate_of"]]
        assert RANKS[target["source"]] < RANKS[r["source"]]
    config = preset_config("zyda2")
    pairs = [(t["id"], t["derived_from"]) for t in truth if t["kind"] == "near_dup"
             and t["id"] in docs and t["derived_from"] in docs and docs[t["id"]]["source"] != docs[t["derived_from"]]["source"]]
    sets = shingle_sets(pa.array([docs[a]["text"] for a, _ in pairs] + [docs[b]["text"] for _, b in pairs]), config)
    similar = [p for i, p in enumerate(pairs) if jaccard(sets[i], sets[len(pairs) + i]) >= 0.95]
    worse = [max(p, key=lambda d: RANKS[docs[d]["source"]]) for p in similar]
    assert similar and sum(w in removed for w in worse) >= 0.9 * len(worse)

    def family(doc_id: str) -> str:
        return by_id[doc_id]["derived_from"] or doc_id
    precision = np.mean([family(r["id"]) == family(r["duplicate_of"]) or by_id[r["id"]]["kind"] in
                         ("spam", "boilerplate") for r in removed.values()])
    assert precision >= 0.95


def files_digest(root: Path, stages: list[str]) -> dict[str, str]:
    out = {}
    for stage in stages:
        for folder in (root / stage, root / "removed" / stage):
            for path in sorted(folder.rglob("*.parquet")):
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_outputs_are_byte_identical_across_partitions_paths_and_executors(workdir, tmp_path, ray_local):
    other = run(tmp_path, partitions=5, max_edges=0, executor="ray")  # distributed rounds, on Ray
    stages = ["exact_dedup", "dedup"]
    assert files_digest(other, stages) == files_digest(workdir, stages)
    marker = Workdir(str(other)).read_json(str(other / "_state" / "components" / "all.json"))
    assert marker["extra"]["path"] == "distributed"


def test_duplicate_ids_are_a_clear_error(tmp_path):
    work = Workdir(str(tmp_path))
    for source, ids in (("dclm", ["a", "b"]), ("zyda", ["c", "a"])):
        work.write_table_atomic(work.path("input", source, "part-00000.parquet"),
                                pa.table({"id": ids, "source": [source] * 2, "text": ["x y z", "p q r"]}))
    stages = [{"id": "input", "type": "preloaded"}, {"id": "minhash", "type": "minhash", "params": {"preset": "zyda1"}},
              {"id": "lsh", "type": "lsh"}]
    recipe = _recipe(["dclm", "zyda"], RANKS, stages, 0, work.path("input"))
    with pytest.raises(StageError, match=r"duplicate document id 'a'.*input/dclm/part-00000.parquet row 0.*"
                                         r"input/zyda/part-00000.parquet row 1"):
        run_recipe(recipe, str(tmp_path), executor="local", interactive=False)


def test_library_entry_point():
    corpus = planted_corpus(originals=150, duplicates=40, edit_range=(0.0, 0.02), seed=5, min_chars=1500)
    result = fuzzy_dedup(corpus.table, preset="zyda2", policy="zyda1", ranks=RANKS)
    assert result.column_names == ["id", "component", "removed", "duplicate_of"]
    assert result["id"].to_pylist() == corpus.table["id"].to_pylist()
    rows = {r["id"]: r for r in result.to_pylist()}
    source = dict(zip(corpus.table["id"].to_pylist(), corpus.table["source"].to_pylist()))
    found = 0
    for original, duplicate in corpus.pairs:  # <= 2% of words edited: Jaccard > 0.9, found w.p. > 0.8
        a, b = rows[original], rows[duplicate]
        if a["component"] != b["component"]:
            assert (a["component"], b["component"]) == (original, duplicate)
            assert not a["removed"] and not b["removed"]
            continue
        found += 1
        assert a["component"] == min(original, duplicate)
        assert a["removed"] != b["removed"]  # zyda1: exactly one survives
        keep, lose = (b, a) if a["removed"] else (a, b)
        assert lose["duplicate_of"] == keep["id"]
        assert (RANKS[source[keep["id"]]], keep["id"]) < (RANKS[source[lose["id"]]], lose["id"])
    assert found >= 0.8 * len(corpus.pairs)
    paired = {d for p in corpus.pairs for d in p}
    assert all(r["component"] == r["id"] and not r["removed"] for r in rows.values() if r["id"] not in paired)
    exact = exact_dedup(pa.concat_tables([corpus.table.slice(0, 3), corpus.table.slice(0, 3).set_column(
        0, "id", pa.array(["x1", "x2", "x3"]))]), policy="keep_one")
    assert exact["removed"].to_pylist() == [False, False, False, True, True, True]


def test_library_entry_point_rejects_bad_tables():
    good = pa.table({"id": ["a", "b"], "source": ["dclm", "zyda"], "text": ["x", "y"]})
    with pytest.raises(ValueError, match="missing"):
        fuzzy_dedup(good.drop_columns(["source"]))
    with pytest.raises(ValueError, match="unique.*'a'"):
        fuzzy_dedup(pa.table({"id": ["a", "a"], "source": ["dclm", "zyda"], "text": ["x", "y"]}))
    with pytest.raises(ValueError, match="rank for every source.*mystery"):
        fuzzy_dedup(good.set_column(1, "source", pa.array(["dclm", "mystery"])), ranks=RANKS)
    with pytest.raises(ValueError, match="unknown policy"):
        fuzzy_dedup(good, policy="newest")
    nothing = fuzzy_dedup(good, ranks=RANKS)  # no duplicates at all: every document is its own component
    assert nothing["component"].to_pylist() == ["a", "b"] and not any(nothing["removed"].to_pylist())
    empty = fuzzy_dedup(pa.table({"id": ["e1", "e2", "w"], "source": ["dclm"] * 3, "text": ["", "", "   "]}),
                        ranks=RANKS, policy="keep_one")
    assert empty["removed"].to_pylist() == [False, True, False]  # two empty texts are identical
    assert pc.all(pc.equal(empty["component"], pa.array(["e1", "e1", "w"]))).as_py()


def test_dedup_report(workdir, capsys):
    from dedup.report import dedup_summary
    from pipeline.cli import main

    summary = dedup_summary(str(workdir), "components", top=2)
    removed = table(workdir / "removed" / "dedup")
    assert summary["removed_total"] == removed.num_rows
    assert summary["removed"] == dict(sorted(Counter(removed["source"].to_pylist()).items()))
    assert sum(r["documents"] for r in summary["removed_by_duplicate_of_source"]) == removed.num_rows
    assert sum(summary["cluster_sizes"].values()) == summary["clusters"] > 0
    sizes = [c["size"] for c in summary["largest_clusters"]]
    assert len(sizes) == 2 and sizes == sorted(sizes, reverse=True)
    biggest = summary["largest_clusters"][0]
    assert sum(biggest["sources"].values()) == biggest["size"]
    assert all(example["snippet"] for example in biggest["examples"])
    assert main(["dedup-report", str(workdir), "--stage", "dedup", "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "## components" in out and "| removed from | duplicate of | documents |" in out and "Largest clusters" in out
    assert main(["dedup-report", str(workdir), "--stage", "ingest"]) == 2


def test_verify_keeps_only_pairs_at_the_true_jaccard_threshold():
    corpus = planted_corpus(originals=80, duplicates=80, edit_range=(0.0, 0.06), seed=3, min_chars=1200)
    config = preset_config("datatrove")
    texts = dict(zip(corpus.table["id"].to_pylist(), corpus.table["text"].to_pylist()))
    sets = shingle_sets(pa.array([texts[a] for a, _ in corpus.pairs] + [texts[b] for _, b in corpus.pairs]), config)
    similarity = {p: jaccard(sets[i], sets[len(corpus.pairs) + i]) for i, p in enumerate(corpus.pairs)}
    plain = fuzzy_dedup(corpus.table, preset="datatrove", policy="keep_one")
    verified = fuzzy_dedup(corpus.table, preset="datatrove", policy="keep_one", verify=True, threshold=0.8)

    def found(result: pa.Table) -> set[tuple[str, str]]:
        component = dict(zip(result["id"].to_pylist(), result["component"].to_pylist()))
        return {p for p in corpus.pairs if component[p[0]] == component[p[1]]}
    assert {p for p in found(plain) if similarity[p] >= 0.8} == found(verified)
    assert any(similarity[p] < 0.8 for p in found(plain))  # the check had something to drop
    with pytest.raises(StageError, match="verify needs shingles"):  # exact keys: the lsh stage refuses up front
        _run(corpus.table, {"id": "exact", "type": "exact_hash"}, {"verify": True}, "keep_one", None, "local", None, 0)


def test_library_workdir_reuse_follows_the_documents(tmp_path, workdir):
    first = pa.table({"id": ["a", "b", "c"], "source": ["dclm", "zyda", "zyda"], "text": ["same", "same", "other"]})
    assert fuzzy_dedup(first, workdir=str(tmp_path), ranks=RANKS)["removed"].to_pylist() == [False, True, False]
    assert (tmp_path / "removed" / "dedup").exists() is False and (tmp_path / "components" / "decisions").exists()
    second = first.set_column(2, "text", pa.array(["same", "other", "other"]))
    assert fuzzy_dedup(second, workdir=str(tmp_path), policy="keep_one")["removed"].to_pylist() == [False, False, True]
    with pytest.raises(ValueError, match="holds a recipe run"):  # never clears a pipeline's workdir
        fuzzy_dedup(first, workdir=str(workdir), ranks=RANKS)


@pytest.mark.parametrize("preset", ["zyda2", "zyda1", "datatrove"])
def test_sample_ground_truth_recall_and_precision(workdir, sample, preset):
    """Every planted (near or exact) duplicate pair of the sample, true Jaccard by brute force under the
    preset's shingling: recall above the threshold vs the S-curve, precision of removals."""
    from dedup.config import detection_probability

    docs = table(workdir / "ingest").select(["id", "source", "text"])
    texts = dict(zip(docs["id"].to_pylist(), docs["text"].to_pylist()))
    truth = {t["id"]: t for t in pq.read_table(sample / "ground_truth.parquet").to_pylist()}
    config = preset_config(preset)
    result = {r["id"]: r for r in fuzzy_dedup(docs, preset=preset, policy="keep_one").to_pylist()}
    pairs = [(t["id"], t["derived_from"]) for t in truth.values() if t["kind"] in ("near_dup", "exact_dup")]
    ids = sorted({d for p in pairs for d in p} | {r["id"] for r in result.values() if r["removed"]} |
                 {r["duplicate_of"] for r in result.values() if r["removed"]})
    sets = dict(zip(ids, shingle_sets(pa.array([texts[i] for i in ids]), config)))
    similarity = np.array([jaccard(sets[a], sets[b]) for a, b in pairs])
    found = np.array([result[a]["component"] == result[b]["component"] for a, b in pairs])
    above = similarity >= config.threshold()
    p = detection_probability(similarity[above], config.bands, config.rows)
    recall = found[above].mean()

    def family(doc_id: str) -> str:
        return truth[doc_id]["derived_from"] or doc_id
    removed = [r for r in result.values() if r["removed"]]
    genuine = [family(r["id"]) == family(r["duplicate_of"]) or
               jaccard(sets[r["id"]], sets[r["duplicate_of"]]) >= config.threshold() - 0.1 for r in removed]
    precision = float(np.mean(genuine))
    print(f"\n{preset}: {above.sum()} of {len(pairs)} planted pairs above J={config.threshold():.2f}: recall "
          f"{recall:.3f} (S-curve {p.mean():.3f}); {len(removed)} removed, precision {precision:.3f}")
    assert recall >= p.mean() - 4 * np.sqrt(np.sum(p * (1 - p))) / p.size - 0.01
    assert precision >= 0.95
