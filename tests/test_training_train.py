"""Trainer on the demo's real token shards: the loss falls, resume is exact, bad runs are refused, CLI works."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from training.checkpoint import LATEST, step_name
from training.config import OptimConfig, load_config
from training.optim import lr_factor
from training.throughput import mfu, peak_flops
from training.train import TrainError, train

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "training" / "configs" / "zamba2-tiny.yaml"


@pytest.fixture(scope="module")
def demo_tokens(tmp_path_factory) -> Path:
    """Token shards of the demo: manifests/sample.yaml's sources, mixture and tokenize stage on a small
    sample, run by the pipeline (ingest, then that tokenize stage; the filtering stages are skipped)."""
    from pipeline.manifest import load_recipe
    from pipeline.runner import run_recipe
    from pipeline.sample import build_sample

    root = tmp_path_factory.mktemp("demo")
    build_sample(root / "sample", seed=5, scale=0.1)
    demo = yaml.safe_load((REPO / "manifests" / "sample.yaml").read_text())
    tokenize = next(s for s in demo["stages"] if s["type"] == "tokenize")
    demo["sources"] = [{**s, "manifest": str(REPO / "manifests" / s["manifest"])} for s in demo["sources"]]
    demo["stages"] = [{"id": "ingest", "type": "ingest"}, tokenize]
    (root / "recipe.yaml").write_text(yaml.safe_dump(demo))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZYDA_SAMPLE_DIR", str(root / "sample"))
        run_recipe(load_recipe(root / "recipe.yaml"), str(root / "work"), executor="local")
    assert (root / "work" / "tokens" / "manifest.json").is_file()
    return root / "work"


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny model is latency-bound: one intra-op thread is faster than two on a shared 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**train) -> object:
    return load_config(TINY, {"train": {"micro_batch_size": 2, "seq_len": 64, "log_every": 1, "ckpt_every": 1000,
                                        **train}})


def test_tiny_model_loss_falls_on_demo_shards(demo_tokens, tmp_path):
    result = train(tiny(steps=30, log_every=5), str(demo_tokens), tmp_path / "run")
    losses = [r["loss"] for r in result.history]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
    assert losses[0] > 9.5  # ~ln(32000) = 10.4 at the start
    assert losses[-1] < losses[0] - 2.0, losses
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [5, 10, 15, 20, 25, 30]
    assert all(x["tokens_per_s"] > 0 and x["mfu"] is None for x in lines)  # no known peak on CPU
    assert (tmp_path / "run" / "checkpoints" / LATEST).read_text() == step_name(30)


def test_resume_reproduces_the_uninterrupted_loss_curve(demo_tokens, tmp_path):
    config = tiny(steps=8, ckpt_every=4)
    full = train(config, str(demo_tokens), tmp_path / "full")
    # an interrupted run: only the step-4 checkpoint survived
    cut = tmp_path / "cut" / "checkpoints"
    cut.mkdir(parents=True)
    shutil.copytree(tmp_path / "full" / "checkpoints" / step_name(4), cut / step_name(4))
    (cut / LATEST).write_text(step_name(4))
    resumed = train(config, str(demo_tokens), tmp_path / "cut", resume=True)
    assert [r["step"] for r in resumed.history] == [5, 6, 7, 8]
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history[4:]]
    a = torch.load(tmp_path / "full" / "checkpoints" / step_name(8) / "model_optim.pt", weights_only=False)
    b = torch.load(cut / step_name(8) / "model_optim.pt", weights_only=False)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_bf16_autocast_path_keeps_fp32_master_weights(demo_tokens, tmp_path):
    """The GPU precision path (bf16 autocast over fp32 weights), exercised on the CPU."""
    result = train(tiny(steps=2, dtype="bfloat16"), str(demo_tokens), tmp_path / "run")
    assert all(math.isfinite(r["loss"]) for r in result.history)
    state = torch.load(tmp_path / "run" / "checkpoints" / step_name(2) / "model_optim.pt", weights_only=False)
    assert {v.dtype for v in state["model"].values()} == {torch.float32}


def test_runs_that_would_lose_or_mix_work_are_refused(demo_tokens, tmp_path):
    train(tiny(steps=2), str(demo_tokens), tmp_path / "run")
    with pytest.raises(TrainError, match="pass --resume"):
        train(tiny(steps=4), str(demo_tokens), tmp_path / "run")
    changed = load_config(TINY, {"train": {"micro_batch_size": 2, "seq_len": 64, "log_every": 1, "ckpt_every": 1000,
                                           "steps": 4}, "optim": {"lr": 1e-3}})
    with pytest.raises(TrainError, match="optim.lr"):
        train(changed, str(demo_tokens), tmp_path / "run", resume=True)
    wider = load_config(TINY, {"model": {"d_model": 32}, "train": {"micro_batch_size": 2, "seq_len": 64,
                                                                   "log_every": 1, "ckpt_every": 1000, "steps": 4}})
    with pytest.raises(TrainError, match="model.d_model"):
        train(wider, str(demo_tokens), tmp_path / "run", resume=True)
    with pytest.raises(TrainError, match="nothing to do"):
        train(tiny(steps=2), str(demo_tokens), tmp_path / "run", resume=True)
    small_vocab = load_config(TINY, {"model": {"vocab_size": 1000}, "train": {"steps": 1}})
    with pytest.raises(TrainError, match="vocab_size"):
        train(small_vocab, str(demo_tokens), tmp_path / "other")


def test_cli_trains_resumes_and_reports_model_info(demo_tokens, tmp_path, capsys):
    from pipeline.cli import main

    args = ["train", str(TINY), "--data", str(demo_tokens), "--out", str(tmp_path / "run"), "--steps", "2"]
    assert main(args) == 0
    assert main(args[:-1] + ["3", "--resume"]) == 0
    assert "trained to step 3" in capsys.readouterr().out
    assert main(["train", str(TINY), "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert "no token manifest" in capsys.readouterr().err
    assert main(["model-info", str(REPO / "training" / "configs" / "zamba2-7b.yaml")]) == 0
    out = capsys.readouterr().out
    assert "zamba2-7b: 7.357B parameters, 13 hybrid positions, 2 shared block(s)" in out


def test_schedule_warms_up_then_decays_to_the_floor():
    cfg = OptimConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, 100, cfg) == pytest.approx(0.1)
    assert lr_factor(9, 100, cfg) == pytest.approx(1.0)
    assert lr_factor(55, 100, cfg) == pytest.approx(0.55)  # halfway through the cosine
    assert lr_factor(100, 100, cfg) == pytest.approx(0.1)
    assert all(lr_factor(s, 100, cfg) >= lr_factor(s + 1, 100, cfg) for s in range(10, 100))


def test_mfu_uses_the_device_peak():
    assert peak_flops(torch.device("cpu")) is None
    assert peak_flops(torch.device("cpu"), override_tflops=100) == 1e14
    assert mfu(1000.0, 6e9, 1e13, devices=2) == pytest.approx(0.3)
    assert mfu(1000.0, 6e9, None, devices=1) is None
