"""The multi-process paths of the trainer (DDP, FSDP2, sharded resume) on 2 CPU processes over gloo."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.procs import free_port
from tests.token_fixtures import synthetic_documents, write_token_workdir
from training.checkpoint import LATEST, step_name
from training.config import load_config
from training.train import train

TINY = Path(__file__).resolve().parents[1] / "training" / "configs" / "zamba2-tiny.yaml"


def config(parallel: str):
    return load_config(TINY, {
        "model": {"vocab_size": 2048},
        "train": {"parallel": parallel, "steps": 4, "ckpt_every": 2, "log_every": 1, "micro_batch_size": 2,
                  "seq_len": 32, "grad_accum": 2},
    })


def _worker(rank: int, world: int, port: int, data: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    root = Path(out)
    ddp = train(config("ddp"), data, root / "ddp", device="cpu")
    fsdp = train(config("fsdp"), data, root / "fsdp", device="cpu")
    if rank == 0:  # a sharded run interrupted after step 2
        (root / "resume" / "checkpoints").mkdir(parents=True)
        shutil.copytree(root / "fsdp" / "checkpoints" / step_name(2), root / "resume" / "checkpoints" / step_name(2))
        (root / "resume" / "checkpoints" / LATEST).write_text(step_name(2))
    dist.barrier()
    resumed = train(config("fsdp"), data, root / "resume", resume=True, device="cpu")
    if rank == 0:
        histories = {"ddp": ddp.history, "fsdp": fsdp.history, "resumed": resumed.history, "tokens": ddp.tokens}
        (root / "histories.json").write_text(json.dumps(histories))
    dist.destroy_process_group()


def test_ddp_and_fsdp_train_the_same_model_and_fsdp_resumes_exactly(tmp_path):
    rng = np.random.default_rng(0)
    data = write_token_workdir(tmp_path / "data", {"a": synthetic_documents(0, 60, rng), "b": synthetic_documents(1, 60, rng)},
                               docs_per_shard=15, vocab_size=2048)
    mp.start_processes(_worker, args=(2, free_port(), str(data), str(tmp_path)), nprocs=2, start_method="fork")
    runs = json.loads((tmp_path / "histories.json").read_text())
    ddp = [r["loss"] for r in runs["ddp"]]
    fsdp = [r["loss"] for r in runs["fsdp"]]
    assert len(ddp) == 4 and ddp[-1] < ddp[0]
    np.testing.assert_allclose(fsdp, ddp, rtol=1e-4)  # same init, same data: only reduction order differs
    np.testing.assert_allclose([r["loss"] for r in runs["resumed"]], fsdp[2:], rtol=1e-6)
    assert runs["tokens"] == 4 * 2 * 2 * 32 * 2  # steps x world x micro-batch x seq_len x accumulation
