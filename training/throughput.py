"""Tokens/s and model FLOPs utilisation (MFU) of a training run."""

from __future__ import annotations

import torch

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, by a substring of the CUDA device name.
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "H800": 989e12,
    "GH200": 989e12,
    "B200": 2250e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "L4": 121e12,
}


def peak_flops(device: torch.device, override_tflops: float | None = None) -> float | None:
    """Peak FLOP/s of one device: the override, else the table entry for a known GPU, else None."""
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key in sorted(PEAK_BF16_FLOPS, key=len, reverse=True):
        if key in name:
            return PEAK_BF16_FLOPS[key]
    return None


def mfu(tokens_per_second: float, train_flops_per_token: float, peak_per_device: float | None, devices: int) -> float | None:
    """Achieved model FLOP/s over the devices' peak (activation recomputation not counted as useful)."""
    if not peak_per_device:
        return None
    return tokens_per_second * train_flops_per_token / (peak_per_device * devices)
