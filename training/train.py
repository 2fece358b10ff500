"""The training loop: AdamW + warmup/cosine, accumulation, clipping, bf16 autocast, DDP/FSDP, exact resume.

    zyda train training/configs/zamba2-tiny.yaml --data WORKDIR [--out DIR] [--steps N] [--resume]
    torchrun --nproc_per_node 8 -m training.cli train training/configs/zamba2-1.2b.yaml --data WORKDIR

On CUDA the forward runs under bf16 autocast (fp32 master weights and optimizer), SDPA uses flash
kernels, AdamW is fused, and `train.compile` compiles each Mamba2 layer and shared block. On CPU the same
loop runs in fp32, which is what the tests exercise.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from training.checkpoint import latest_checkpoint, load_checkpoint, read_meta, save_checkpoint
from training.config import RunConfig
from training.data import TokenLoader
from training.distributed import DistEnv, all_reduce_mean, init_distributed, wrap_model
from training.models.zamba2 import Zamba2
from training.optim import build_optimizer, build_scheduler
from training.throughput import mfu, peak_flops

log = logging.getLogger("zyda.train")
METRICS = "metrics.jsonl"
# Train settings that may change between a run and its resumption (they do not change the math).
RESUMABLE_CHANGES = {"steps", "log_every", "ckpt_every", "keep_checkpoints", "compile", "peak_tflops"}


class TrainError(RuntimeError):
    """A training run that cannot start or resume as asked; the message says why."""


@dataclass
class TrainResult:
    out: Path
    step: int
    tokens: int
    history: list[dict[str, Any]] = field(default_factory=list)


def _use_bf16(config: RunConfig, device: torch.device) -> bool:
    wanted = config.train.dtype
    return wanted == "bfloat16" or (wanted == "auto" and device.type == "cuda")


def _grad_sync(model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
    if hasattr(model, "no_sync"):  # DDP
        return contextlib.nullcontext() if sync else model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(sync)
    return contextlib.nullcontext()


def _comparable(config: RunConfig) -> dict[str, Any]:
    dumped = config.model_dump(mode="json")
    dumped["train"] = {k: v for k, v in dumped["train"].items() if k not in RESUMABLE_CHANGES}
    return dumped


def _check_same_run(saved: dict[str, Any], config: RunConfig, path: Path) -> None:
    current = _comparable(config)
    saved = {**saved, "train": {k: v for k, v in saved["train"].items() if k not in RESUMABLE_CHANGES}}
    differing = [f"{section}.{key}" for section in current for key in set(current[section]) | set(saved.get(section, {}))
                 if current[section].get(key) != saved.get(section, {}).get(key)]
    if differing:
        raise TrainError(f"{path} was written with a different config ({', '.join(sorted(differing))}); "
                         f"resume with the same config or start a new --out")


def _trim_metrics(path: Path, step: int) -> None:
    """Drop metric lines past the resumed step (an interrupted run logged them, they will be redone)."""
    if path.is_file():
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept))


def train(config: RunConfig, data: str, out: str | Path, resume: bool = False, device: str | None = None) -> TrainResult:
    """Train `config` on the token shards of workdir `data`, writing checkpoints and metrics to `out`."""
    out = Path(out)
    owns_group = not dist.is_initialized()
    env = init_distributed(device)
    try:
        return _train(config, data, out, resume, env)
    finally:
        if owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _train(config: RunConfig, data: str, out: Path, resume: bool, env: DistEnv) -> TrainResult:
    tcfg = config.train
    bf16 = _use_bf16(config, env.device)
    cuda = env.device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    loader = TokenLoader(data, tcfg.seq_len, tcfg.micro_batch_size, seed=tcfg.seed, rank=env.rank,
                         world_size=env.world_size, num_workers=tcfg.num_workers, weights=config.data.weights,
                         pin_memory=cuda)
    if loader.manifest.vocab_size > config.model.vocab_size:
        raise TrainError(f"the tokenizer of {data} has {loader.manifest.vocab_size} ids, the model's vocab_size is "
                         f"{config.model.vocab_size}")

    torch.manual_seed(tcfg.seed)
    with env.device:  # allocate on the GPU directly: no full fp32 copy in host memory per rank
        model = Zamba2(config.model)
    train_flops_per_token = 3 * model.flops_per_token(tcfg.seq_len)
    parallel = "ddp" if tcfg.parallel == "auto" else tcfg.parallel
    wrapped = wrap_model(model, env, parallel, bf16)
    if tcfg.compile:
        for module in [*model.layers, *model.shared]:
            module.compile()
    optimizer = build_optimizer(model, config.optim, fused=cuda)
    scheduler = build_scheduler(optimizer, tcfg.steps, config.optim)

    ckpt_dir = out / "checkpoints"
    metrics_path = out / METRICS
    latest = latest_checkpoint(ckpt_dir)
    start = 0
    if latest is not None and not resume:
        raise TrainError(f"{out} already holds checkpoints (latest {latest.name}); pass --resume to continue "
                         f"or choose another --out")
    if resume and latest is not None:
        _check_same_run(read_meta(latest)["config"], config, latest)
        meta, data_state = load_checkpoint(latest, wrapped, optimizer, scheduler, env)
        loader.load_state_dict(data_state)
        start = meta["step"]
        if env.is_main:
            _trim_metrics(metrics_path, start)
            log.info("resumed from %s at step %d", latest, start)
    elif resume and env.is_main:
        log.info("no checkpoint under %s: starting from step 0", ckpt_dir)
    if start >= tcfg.steps:
        raise TrainError(f"{latest} is at step {start}; nothing to do for steps={tcfg.steps} (raise --steps)")
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        log.info("model %s: %.2fM parameters, %.3g training FLOPs/token; device %s x%d%s",
                 config.model.name, model.num_params() / 1e6, train_flops_per_token, env.device, env.world_size,
                 ", bf16 autocast" if bf16 else "")

    tokens_per_step = tcfg.micro_batch_size * tcfg.seq_len * tcfg.grad_accum * env.world_size
    peak = peak_flops(env.device, tcfg.peak_tflops)
    result = TrainResult(out, start, start * tokens_per_step)
    interval_loss = torch.zeros((), device=env.device)
    interval_steps, interval_start = 0, time.perf_counter()
    wrapped.train()
    for step in range(start, tcfg.steps):
        for micro in range(tcfg.grad_accum):
            batch = next(loader)
            ids = batch["input_ids"].to(env.device, non_blocking=True)
            labels = batch["labels"].to(env.device, non_blocking=True)
            segments = batch["segment_ids"].to(env.device, non_blocking=True) if tcfg.document_masking else None
            with _grad_sync(wrapped, micro == tcfg.grad_accum - 1):
                with torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = wrapped(ids, segments, labels)
                (loss / tcfg.grad_accum).backward()
            interval_loss += loss.detach() / tcfg.grad_accum
        grad_norm = None
        if config.optim.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
            grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        interval_steps += 1
        done = step + 1
        result.step, result.tokens = done, result.tokens + tokens_per_step

        if done % tcfg.log_every == 0 or done == tcfg.steps:
            mean_loss = all_reduce_mean(interval_loss / interval_steps).item()
            elapsed = time.perf_counter() - interval_start
            tokens_per_s = tokens_per_step * interval_steps / elapsed
            record = {
                "step": done,
                "loss": mean_loss,
                "lr": scheduler.get_last_lr()[0],
                "grad_norm": None if grad_norm is None else float(grad_norm),
                "tokens": result.tokens,
                "tokens_per_s": tokens_per_s,
                "mfu": mfu(tokens_per_s, train_flops_per_token, peak, env.world_size),
            }
            result.history.append(record)
            if env.is_main:
                with metrics_path.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
                mfu_text = "n/a" if record["mfu"] is None else f"{100 * record['mfu']:.1f}%"
                log.info("step %d/%d | loss %.4f | lr %.2e | grad %s | %s tok/s | mfu %s", done, tcfg.steps,
                         mean_loss, record["lr"], "-" if grad_norm is None else f"{record['grad_norm']:.3f}",
                         f"{tokens_per_s:,.0f}", mfu_text)
            interval_loss.zero_()
            interval_steps, interval_start = 0, time.perf_counter()

        if done % tcfg.ckpt_every == 0 or done == tcfg.steps:
            meta = {"config": config.model_dump(mode="json"), "tokens": result.tokens}
            path = save_checkpoint(ckpt_dir, done, wrapped, optimizer, scheduler, loader.state_dict(), meta, env,
                                   tcfg.keep_checkpoints)
            if env.is_main:
                log.info("checkpoint %s", path)
    return result
