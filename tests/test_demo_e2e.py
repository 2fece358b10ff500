"""`make demo` end to end, on a small sample: every stage of manifests/sample.yaml on a local Ray."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.upstream_fixtures import REPO


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    demo_dir = tmp_path_factory.mktemp("demo")
    # `-o .venv/.installed`: the environment running the tests is the installed one already.
    result = subprocess.run(["make", "-C", str(REPO), "-o", ".venv/.installed", "demo", f"DEMO_DIR={demo_dir}",
                             "SAMPLE_SCALE=0.1"], capture_output=True, text=True, timeout=1200)
    return demo_dir, result


@pytest.mark.e2e
def test_make_demo_finishes_every_stage(demo):
    demo_dir, result = demo
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    workdir = demo_dir / "work"
    assert f"report: {workdir}/report/report.html" in result.stdout
    manifest = json.loads((workdir / "manifest.json").read_text())
    for stage in manifest["stages"]:
        marker = json.loads((workdir / "_state" / stage["id"] / "_stage.json").read_text())
        assert marker["config_hash"] == stage["config_hash"]
        for source, stats in marker["stats"].items():
            assert stats["docs_in"] == stats["docs_out"] + sum(stats["dropped"].values()), (stage["id"], source)
    report = (workdir / "report" / "report.md").read_text()
    assert "| ingest | dclm |" in report and (workdir / "report" / "report.html").exists()
    # The demo runs offline without the Zyda-1 word lists: the report must say those rules were off.
    assert "word-list rules were skipped" in report


@pytest.mark.e2e
def test_demo_ingest_matches_the_sample_ground_truth(demo):
    demo_dir, result = demo
    assert result.returncode == 0
    truth = pq.read_table(demo_dir / "sample" / "ground_truth.parquet", columns=["id"])
    ingested = pq.read_table(demo_dir / "work" / "ingest", columns=["id"])
    assert sorted(ingested["id"].to_pylist()) == sorted(truth["id"].to_pylist())
