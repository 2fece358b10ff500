"""`zyda train` and `zyda model-info`; also `python -m training.cli train ...` for torchrun.

Torch is imported inside the commands, so `zyda --help` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train a Zamba2 model on a workdir's token shards")
    train.add_argument("config", help="training YAML, e.g. training/configs/zamba2-tiny.yaml")
    train.add_argument("--data", required=True, help="workdir holding tokens/manifest.json (local or fsspec URL)")
    train.add_argument("--out", default=None, help="checkpoints and metrics (default: runs/<model name>)")
    train.add_argument("--steps", type=int, default=None, help="total optimizer steps (overrides train.steps)")
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint under --out")
    train.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda:LOCAL_RANK if any)")
    train.add_argument("--compile", action="store_true", help="torch.compile each layer (overrides train.compile)")
    train.add_argument("--num-workers", type=int, default=None, help="DataLoader workers per rank")
    train.set_defaults(func=_cmd_train)

    info = subparsers.add_parser("model-info", help="parameters, FLOPs/token and attention costs of a training config")
    info.add_argument("config")
    info.add_argument("--seq-len", type=int, default=None, help="context for FLOPs (default: train.seq_len)")
    info.set_defaults(func=_cmd_model_info)


def _cmd_train(args: argparse.Namespace) -> int:
    from training.checkpoint import CheckpointError
    from training.config import ConfigError, load_config
    from training.data import DataError
    from training.train import TrainError, train

    overrides: dict = {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.compile:
        overrides["compile"] = True
    if args.num_workers is not None:
        overrides["num_workers"] = args.num_workers
    try:
        config = load_config(args.config, {"train": overrides} if overrides else None)
        out = Path(args.out) if args.out else Path("runs") / config.model.name
        result = train(config, args.data, out, resume=args.resume, device=args.device)
    except (ConfigError, DataError, TrainError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    last = result.history[-1] if result.history else {}
    print(f"trained to step {result.step} ({result.tokens:,} tokens), last loss {last.get('loss', float('nan')):.4f}; "
          f"checkpoints and metrics.jsonl in {result.out}")
    return 0


def _cmd_model_info(args: argparse.Namespace) -> int:
    import torch

    from training.config import ConfigError, load_config
    from training.layers.cca import attention_costs
    from training.models.zamba2 import Zamba2

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg = config.model
    seq_len = args.seq_len or config.train.seq_len
    with torch.device("meta"):
        model = Zamba2(cfg)
    print(f"{cfg.name}: {model.num_params() / 1e9:.3f}B parameters, {len(cfg.hybrid_layers)} hybrid positions, "
          f"{cfg.num_mem_blocks} shared block(s)")
    print(f"forward FLOPs/token at {seq_len}: {model.flops_per_token(seq_len) / 1e9:.2f} GFLOP (training ~3x)")
    heads, kv_heads, head_dim = cfg.attention.layout(cfg.d_model)
    width = 2 * cfg.d_model
    mha = attention_costs("mha", width, cfg.d_model, cfg.attention.num_heads, cfg.attention.num_heads,
                          width // cfg.attention.num_heads, context=seq_len / 2)
    own = attention_costs(cfg.attention.type, width, cfg.d_model, heads, kv_heads, head_dim, context=seq_len / 2)
    print(f"attention per position ({cfg.attention.type}: {heads} q heads, {kv_heads} kv heads, head dim {head_dim}) vs MHA:")
    for label, key in [("parameters", "params"), ("KV cache bytes/token (bf16)", "kv_cache_bytes_per_token"),
                       ("FLOPs/token", "flops_per_token"), ("core FLOPs/token", "core_flops_per_token")]:
        a, b = getattr(own, key), getattr(mha, key)
        print(f"  {label:28} {a:>14,} vs {b:>14,}  ({a / b:.2f}x)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for `torchrun -m training.cli train ...` (the same commands as `zyda`)."""
    parser = argparse.ArgumentParser(prog="python -m training.cli")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
