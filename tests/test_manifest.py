"""Manifests: the shipped ones load; mistakes get messages that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.manifest import ManifestError, expand_env, load_recipe, load_source
from tests.upstream_fixtures import REPO, write_recipe


@pytest.mark.parametrize("path", sorted((REPO / "manifests" / "sources").rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_source_manifests_load(path: Path):
    source = load_source(path)
    assert source.dedup_rank >= 1 and source.keep_columns


def test_real_sources_point_at_the_hub():
    uris = {load_source(p).component: load_source(p) for p in (REPO / "manifests" / "sources").glob("*.yaml")}
    assert uris["fwe3"].uri == ["hf://datasets/HuggingFaceFW/fineweb-edu-score-2/data/*/*.parquet"]
    assert uris["dclm"].format == "jsonl.zst"
    assert uris["zyda"].uri == ["hf://datasets/Zyphra/Zyda/data/zyda_no_starcoder/*/*.parquet"]
    assert uris["dolma_cc"].url_list == "hf://datasets/allenai/dolma/urls/v1_7.txt"
    ranks = sorted(uris.values(), key=lambda s: s.dedup_rank)
    assert [s.component for s in ranks] == ["fwe3", "dclm", "zyda", "dolma_cc"]


def test_zyda2_recipe_loads():
    recipe = load_recipe(REPO / "manifests" / "zyda2.yaml")
    assert recipe.recipe.mixture == {"dclm": 4.0, "fwe3": 4.0, "zyda": 0.16, "dolma_cc": 0.24}
    assert recipe.components == ["fwe3", "dclm", "zyda", "dolma_cc"]


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(stagez=[]), "stagez: unknown key"),
    (lambda d: d.update(seed="abc"), "seed: Input should be a valid integer"),
    (lambda d: d.pop("stages"), "stages: required key is missing"),
    (lambda d: d["stages"].append({"id": "x", "type": "no_such_stage"}), "unknown stage type 'no_such_stage'"),
    (lambda d: d["stages"][0].update(params={"bogus": 1}), "params: invalid manifest\n  - bogus: unknown key"),
    (lambda d: d["stages"].append({"id": "ingest", "type": "ingest"}), "stage id 'ingest' is used twice"),
    (lambda d: d["sources"].append({"manifest": "sources/missing.yaml"}), "manifest file not found"),
    (lambda d: d["stages"][0].update(sources=["nope"]), "unknown source 'nope'"),
])
def test_recipe_mistakes_are_named(tmp_path, upstream, change, message):
    path = write_recipe(tmp_path / "r", upstream, [{"id": "ingest", "type": "ingest"}])
    _edit(path, change)
    with pytest.raises(ManifestError) as error:
        load_recipe(path)
    assert str(path) in str(error.value) or "missing.yaml" in str(error.value)
    assert message in str(error.value)


def test_source_mistakes_are_named(tmp_path, upstream):
    path = write_recipe(tmp_path / "r", upstream, [{"id": "ingest", "type": "ingest"}])
    source = tmp_path / "r" / "sources" / "zyda-1.yaml"
    _edit(source, lambda d: d.update(format="csv"))
    with pytest.raises(ManifestError, match=r"zyda-1.yaml: invalid manifest\n  - format: Input should be"):
        load_recipe(path)
    _edit(source, lambda d: d.update(format="parquet", keep_columns={"source": "varchar"}))
    with pytest.raises(ManifestError, match="keep_columns.source"):
        load_recipe(path)


def test_env_expansion(monkeypatch):
    monkeypatch.setenv("ZYDA_TEST_ROOT", "/data")
    assert expand_env("${ZYDA_TEST_ROOT}/x/*.parquet") == "/data/x/*.parquet"
    assert expand_env("${ZYDA_UNSET_VAR:-demo/sample}/x") == "demo/sample/x"
    with pytest.raises(ManifestError, match="ZYDA_UNSET_VAR is not set"):
        expand_env("${ZYDA_UNSET_VAR}/x")
