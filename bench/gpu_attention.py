"""Attention latency (MHA, GQA, CCA, CCGQA) and Zamba2 training throughput on a GPU.

    python bench/gpu_attention.py                      # CUDA: bf16, width 2048, sequences 2k..16k, ~1B Zamba2
    python bench/gpu_attention.py --compile --json out.json
    python bench/gpu_attention.py --smoke              # tiny shapes on CPU (what the tests run)

Part 1 times one attention layer, forward and forward+backward, at equal model width E: MHA (E/d heads),
GQA (E/d query heads, --gqa-kv kv heads) and CCA / CCGQA at each --compressions factor C (E/(C d) latent
heads; CCGQA with half as many kv heads), next to the analytic FLOP ratio from `attention_costs`.
Part 2 trains the zamba2-1.2b config on random tokens and reports tokens/s and MFU.
Without CUDA and without --smoke it runs the smoke configuration and says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# `python bench/x.py` puts bench/ first on sys.path, where bench/tokenize.py would shadow the stdlib module.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from training.config import load_config  # noqa: E402
from training.layers.attention import Attention, Packing  # noqa: E402
from training.layers.cca import CCA, attention_costs  # noqa: E402
from training.models.zamba2 import Zamba2  # noqa: E402
from training.optim import build_optimizer  # noqa: E402
from training.throughput import mfu, peak_flops  # noqa: E402


def layer_specs(width: int, head_dim: int, gqa_kv: int, compressions: list[int]) -> dict[str, tuple[str, int, int]]:
    """name -> (kind, query heads, kv heads) at model width `width`."""
    heads = width // head_dim
    specs = {"mha": ("mha", heads, heads), f"gqa-kv{gqa_kv}": ("gqa", heads, gqa_kv)}
    for c in compressions:
        latent = heads // c
        specs[f"cca-c{c}"] = ("cca", latent, latent)
        if latent >= 2:
            specs[f"ccgqa-c{c}"] = ("ccgqa", latent, latent // 2)
    return specs


def build_layer(kind: str, width: int, heads: int, kv_heads: int, head_dim: int) -> torch.nn.Module:
    if kind in ("mha", "gqa"):
        return Attention(width, width, heads, kv_heads, head_dim)
    return CCA(width, width, heads, kv_heads, head_dim)


def timed(fn, warmup: int, iters: int, device: torch.device) -> float:
    """Median milliseconds of fn() over iters runs after warmup."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def bench_attention(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> list[dict]:
    rows = []
    specs = layer_specs(args.width, args.head_dim, args.gqa_kv, args.compressions)
    packing = Packing(None, None)  # one document per row: causal flash path
    for seq_len in args.seq_lens:
        base = attention_costs("mha", args.width, args.width, args.width // args.head_dim,
                               args.width // args.head_dim, args.head_dim, context=seq_len / 2)
        mha_ms = None
        for name, (kind, heads, kv) in specs.items():
            torch.manual_seed(0)
            layer = build_layer(kind, args.width, heads, kv, args.head_dim).to(device=device, dtype=dtype)
            run = torch.compile(layer) if args.compile else layer
            x = torch.randn(args.batch, seq_len, args.width, device=device, dtype=dtype, requires_grad=True)

            def forward(run=run, x=x):
                with torch.no_grad():
                    run(x, packing)

            def forward_backward(run=run, x=x):
                run(x, packing).float().square().mean().backward()

            fwd = timed(forward, args.warmup, args.iters, device)
            fwd_bwd = timed(forward_backward, args.warmup, args.iters, device)
            costs = attention_costs(kind, args.width, args.width, heads, kv, args.head_dim, context=seq_len / 2)
            mha_ms = mha_ms or (fwd, fwd_bwd)
            rows.append({
                "seq_len": seq_len, "attention": name, "q_heads": heads, "kv_heads": kv,
                "forward_ms": fwd, "forward_backward_ms": fwd_bwd,
                "forward_speedup_vs_mha": mha_ms[0] / fwd, "forward_backward_speedup_vs_mha": mha_ms[1] / fwd_bwd,
                "flops_ratio_vs_mha": base.flops_per_token / costs.flops_per_token,
                "kv_cache_ratio_vs_mha": base.kv_cache_bytes_per_token / costs.kv_cache_bytes_per_token,
            })
            del layer, run, x
    return rows


def bench_training(args: argparse.Namespace, device: torch.device) -> dict:
    config = load_config(args.train_config)
    torch.manual_seed(0)
    model = Zamba2(config.model).to(device)
    if args.compile:
        for module in [*model.layers, *model.shared]:
            module.compile()
    optimizer = build_optimizer(model, config.optim, fused=device.type == "cuda")
    bf16 = device.type == "cuda"
    ids = torch.randint(0, config.model.vocab_size, (args.train_batch, args.train_seq_len + 1), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(ids[:, :-1], None, ids[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    ms = timed(step, args.warmup, args.train_steps, device)
    tokens_per_s = args.train_batch * args.train_seq_len / (ms / 1e3)
    flops = 3 * model.flops_per_token(args.train_seq_len)
    peak = peak_flops(device, args.peak_tflops)
    return {"config": config.model.name, "params": model.num_params(), "seq_len": args.train_seq_len,
            "batch": args.train_batch, "step_ms": ms, "tokens_per_s": tokens_per_s,
            "train_flops_per_token": flops, "mfu": mfu(tokens_per_s, flops, peak, 1),
            "peak_tflops": None if peak is None else peak / 1e12}


def smoke(args: argparse.Namespace) -> None:
    args.width, args.head_dim, args.gqa_kv, args.compressions = 64, 16, 2, [2]
    args.seq_lens, args.batch, args.warmup, args.iters = [64, 128], 2, 1, 2
    args.train_config = str(ROOT / "training" / "configs" / "zamba2-tiny.yaml")
    args.train_seq_len, args.train_batch, args.train_steps = 64, 2, 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, fp32, CPU-friendly")
    parser.add_argument("--device", default=None)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--gqa-kv", type=int, default=4)
    parser.add_argument("--compressions", type=lambda s: [int(x) for x in s.split(",")], default=[2, 4])
    parser.add_argument("--seq-lens", type=lambda s: [int(x) for x in s.split(",")], default=[2048, 4096, 8192, 16384])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--compile", action="store_true", help="torch.compile the layers (fuses CCA's convs/norms)")
    parser.add_argument("--train-config", default=str(ROOT / "training" / "configs" / "zamba2-1.2b.yaml"))
    parser.add_argument("--train-seq-len", type=int, default=4096)
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: by GPU name)")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not args.smoke and device.type != "cuda":
        print("no CUDA device: running the --smoke configuration (tiny shapes, fp32) instead of the GPU benchmark")
        args.smoke = True
    if args.smoke:
        smoke(args)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{datetime.date.today()}  device {name}  torch {torch.__version__}  dtype {str(dtype).split('.')[-1]}"
          f"  width {args.width}  head_dim {args.head_dim}  batch {args.batch}{'  compiled' if args.compile else ''}")

    rows = bench_attention(args, device, dtype)
    print(f"{'seq':>6} {'attention':>10} {'q/kv':>6} {'fwd ms':>9} {'x MHA':>6} {'fwd+bwd ms':>11} {'x MHA':>6}"
          f" {'FLOPs x':>8} {'KV x':>5}")
    for r in rows:
        print(f"{r['seq_len']:>6} {r['attention']:>10} {r['q_heads']:>3}/{r['kv_heads']:<2} {r['forward_ms']:>9.3f}"
              f" {r['forward_speedup_vs_mha']:>6.2f} {r['forward_backward_ms']:>11.3f}"
              f" {r['forward_backward_speedup_vs_mha']:>6.2f} {r['flops_ratio_vs_mha']:>8.2f}"
              f" {r['kv_cache_ratio_vs_mha']:>5.1f}")
    training = None if args.skip_training else bench_training(args, device)
    if training:
        mfu_text = "n/a (unknown peak)" if training["mfu"] is None else f"{100 * training['mfu']:.1f}%"
        print(f"training {training['config']} ({training['params'] / 1e9:.3f}B params), seq {training['seq_len']} x "
              f"batch {training['batch']}: {training['step_ms']:.1f} ms/step, {training['tokens_per_s']:,.0f} tokens/s, "
              f"MFU {mfu_text}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "date": str(datetime.date.today()), "device": name, "torch": torch.__version__, "smoke": args.smoke,
            "compiled": args.compile, "attention": rows, "training": training}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
