"""Checkpoints that resume exactly: model, optimizer, schedule, every rank's data-loader position and RNGs.

Layout under OUT/checkpoints/:
    step-00000200/model_optim.pt    full (unsharded) model + optimizer state, written by rank 0
    step-00000200/rank-00000.pt     per rank: data-loader state and RNG states
    step-00000200/meta.json         step, tokens seen, config (to refuse resuming a different run)
    latest                          name of the newest complete checkpoint
A checkpoint is assembled in a `.tmp-` folder and renamed when complete, and `latest` is replaced
atomically, so an interrupted save never leaves a checkpoint that looks whole.
Full state dicts come from `torch.distributed.checkpoint.state_dict`, which gathers FSDP shards and
unwraps DDP, so a checkpoint loads into any world size and any wrapping.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from training.distributed import DistEnv, barrier

LATEST = "latest"


class CheckpointError(RuntimeError):
    """A checkpoint folder that cannot be resumed from; the message says which and why."""


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def step_name(step: int) -> str:
    return f"step-{step:08d}"


def latest_checkpoint(folder: Path) -> Path | None:
    pointer = folder / LATEST
    if not pointer.is_file():
        return None
    path = folder / pointer.read_text().strip()
    if not (path / "meta.json").is_file():
        raise CheckpointError(f"{pointer} names {path.name}, which is not a complete checkpoint")
    return path


def save_checkpoint(
    folder: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader_state: dict[str, Any],
    meta: dict[str, Any],
    env: DistEnv,
    keep: int,
) -> Path:
    """Write checkpoint `step` (a collective call: every rank must enter it)."""
    model_state, optim_state = get_state_dict(
        model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    final = folder / step_name(step)
    tmp = folder / f".tmp-{step_name(step)}"
    if env.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    torch.save({"data": loader_state, "rng": _rng_state(env.device)}, tmp / f"rank-{env.rank:05d}.pt")
    barrier()
    if env.is_main:
        torch.save({"model": model_state, "optimizer": optim_state, "scheduler": scheduler.state_dict()},
                   tmp / "model_optim.pt")
        (tmp / "meta.json").write_text(json.dumps({**meta, "step": step, "world_size": env.world_size}, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        pointer = folder / f".{LATEST}.tmp"
        pointer.write_text(final.name)
        os.replace(pointer, folder / LATEST)
        done = sorted(p for p in folder.glob("step-*") if p.is_dir())
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def read_meta(path: Path) -> dict[str, Any]:
    """A checkpoint's step, token count and config, without loading any tensor."""
    return json.loads((path / "meta.json").read_text())


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    env: DistEnv,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore model/optimizer/scheduler/RNG in place; returns (meta, this rank's data-loader state)."""
    meta = read_meta(path)
    if meta["world_size"] != env.world_size:
        raise CheckpointError(f"{path} was written by {meta['world_size']} processes, this run has "
                              f"{env.world_size}; the data-loader positions are per rank")
    rank_file = path / f"rank-{env.rank:05d}.pt"
    if not rank_file.is_file() or not (path / "model_optim.pt").is_file():
        raise CheckpointError(f"{path} lacks model_optim.pt or {rank_file.name}; it is not a complete checkpoint")
    states = torch.load(path / "model_optim.pt", map_location="cpu", weights_only=False)
    set_state_dict(model, optimizer, model_state_dict=states["model"], optim_state_dict=states["optimizer"],
                   options=StateDictOptions(full_state_dict=True))
    scheduler.load_state_dict(states["scheduler"])
    own = torch.load(rank_file, map_location="cpu", weights_only=False)
    _set_rng_state(own["rng"], env.device)
    return meta, own["data"]
