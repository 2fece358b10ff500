"""The stage runner: resume after SIGKILL, refusal of changed configs, accounting, Ray execution."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.cli import main
from pipeline.manifest import load_recipe
from pipeline.registry import register_stage
from pipeline.runner import run_recipe
from pipeline.stage import AccountingError, BatchDecision, DocumentStage, StageError
from tests.upstream_fixtures import REPO, tree_bytes, write_recipe, write_upstream

INGEST = [{"id": "ingest", "type": "ingest"}]


def _markers(workdir: Path, stage: str) -> list[dict]:
    folder = workdir / "_state" / stage
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if not p.name.startswith("_")]


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    data = write_upstream(tmp_path / "up", files=12, rows=4000)
    recipe_path = write_recipe(tmp_path / "r", data, INGEST, execution={"batch_size": 500, "target_part_bytes": 65536})
    reference = tmp_path / "reference"
    run_recipe(load_recipe(recipe_path), str(reference), executor="local")

    workdir = tmp_path / "killed"
    command = [sys.executable, "-m", "pipeline.cli", "run", str(recipe_path), "--workdir", str(workdir),
               "--executor", "local"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not _markers(workdir, "ingest"):
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(_markers(workdir, "ingest"))
    assert 0 < finished < 48, "the kill should land in the middle of the stage"
    assert not (workdir / "_state" / "ingest" / "_stage.json").exists()

    run_recipe(load_recipe(recipe_path), str(workdir), executor="local")
    assert tree_bytes(workdir, "ingest") == tree_bytes(reference, "ingest")
    assert len(_markers(workdir, "ingest")) == 48
    assert not list((workdir / "ingest").rglob(".tmp-*"))


def test_changed_config_is_refused_unless_forced(tmp_path, upstream):
    recipe_path = write_recipe(tmp_path / "r", upstream, INGEST)
    workdir = str(tmp_path / "w")
    run_recipe(load_recipe(recipe_path), workdir, executor="local")
    summaries = run_recipe(load_recipe(recipe_path), workdir, executor="local")
    assert [s.status for s in summaries] == ["skipped"]

    source = tmp_path / "r" / "sources" / "zyda-1.yaml"
    source.write_text(source.read_text().replace("  source_other: auto\n", ""))
    with pytest.raises(StageError, match="different configuration.*--force"):
        run_recipe(load_recipe(recipe_path), workdir, executor="local")
    summaries = run_recipe(load_recipe(recipe_path), workdir, executor="local", force=True)
    assert [s.status for s in summaries] == ["ran"]
    table = pa.parquet.read_table(tmp_path / "w" / "ingest" / "zyda")
    assert "source_other" not in [f.name for f in table.schema.field("meta").type]


@register_stage
class _LosesDocuments(DocumentStage):
    """A broken stage for the accounting test: drops a row without saying why."""

    type_name = "test_loses_documents"

    def process(self, table, task):
        return BatchDecision(table.slice(1), table.slice(0, 0).append_column("reason", pa.array([], pa.string())))


def test_accounting_violation_fails_the_stage(tmp_path, upstream):
    stages = INGEST + [{"id": "lossy", "type": "test_loses_documents"}]
    recipe = load_recipe(write_recipe(tmp_path / "r", upstream, stages))
    with pytest.raises(AccountingError, match="docs_in=30 != docs_out=29"):
        run_recipe(recipe, str(tmp_path / "w"), executor="local")


def test_unfinished_input_is_a_clear_error(tmp_path, upstream):
    stages = INGEST + [{"id": "lossy", "type": "test_loses_documents"}]
    recipe = load_recipe(write_recipe(tmp_path / "r", upstream, stages))
    with pytest.raises(StageError, match="stage 'ingest' has not finished"):
        run_recipe(recipe, str(tmp_path / "w"), stages=["lossy"], executor="local")


def test_local_ray_runs_the_stage(tmp_path, upstream, ray_local):
    recipe_path = write_recipe(tmp_path / "r", upstream, INGEST)
    run_recipe(load_recipe(recipe_path), str(tmp_path / "ray"), executor="ray")
    run_recipe(load_recipe(recipe_path), str(tmp_path / "local"), executor="local")
    assert tree_bytes(tmp_path / "ray", "ingest") == tree_bytes(tmp_path / "local", "ingest")
    assert all(m["worker"]["node"] for m in _markers(tmp_path / "ray", "ingest"))


def test_two_node_cluster_spreads_tasks(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        data = write_upstream(tmp_path / "up", files=6, rows=3000)
        recipe_path = write_recipe(tmp_path / "r", data, INGEST)
        run_recipe(load_recipe(recipe_path), str(tmp_path / "w"), executor="ray", ray_address=cluster.address)
        nodes = {m["worker"]["node"] for m in _markers(tmp_path / "w", "ingest")}
        assert len(nodes) == 2
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_cli_status_report_and_plain_errors(tmp_path, upstream, capsys):
    recipe_path = write_recipe(tmp_path / "r", upstream, INGEST + [{"id": "report", "type": "report"}])
    workdir = str(tmp_path / "w")
    assert main(["run", str(recipe_path), "--workdir", workdir, "--executor", "local"]) == 0
    assert main(["status", workdir]) == 0
    out = capsys.readouterr().out
    assert "ingest (ingest): 8/8 tasks, done, 240 docs in, 240 out" in out
    report = (tmp_path / "w" / "report" / "report.md").read_text()
    assert "| ingest | dclm | 60 | 60 | 0 |" in report
    assert (tmp_path / "w" / "report" / "documents.png").read_bytes()[:4] == b"\x89PNG"
    assert "<table>" in (tmp_path / "w" / "report" / "report.html").read_text()

    assert main(["run", str(tmp_path / "missing.yaml"), "--workdir", workdir, "--executor", "local"]) == 2
    assert "manifest file not found" in capsys.readouterr().err
    assert main(["status", str(tmp_path / "mistyped")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "mistyped").exists()
    for path in (upstream / "dolma").rglob("*.json.gz"):
        os.remove(path)
    assert main(["ingest", str(recipe_path), "--workdir", str(tmp_path / "w2"), "--executor", "local"]) == 2
    assert "error: " in capsys.readouterr().err


def test_missing_cluster_is_a_clear_error(monkeypatch):
    import ray

    from pipeline.executors import RayExecutor

    def no_cluster(*args, **kwargs):
        raise ConnectionError("Could not find any running Ray instance.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", no_cluster)
    with pytest.raises(StageError, match="cannot join the Ray cluster at 'auto'.*ray start --head"):
        RayExecutor(address="auto")
