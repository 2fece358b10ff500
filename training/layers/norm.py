"""Normalization layers not in `torch.nn`: Mamba2's gated, group-wise RMSNorm."""

from __future__ import annotations

import torch
from torch import nn


class GatedRMSNorm(nn.Module):
    """`rms(y * silu(z)) * w`, the RMS taken separately over each of the `groups` channel groups.

    Mamba2 normalizes after gating (norm_before_gate=False) and per B/C group, so that with several
    groups each group's heads are scaled independently (which keeps tensor-parallel shards exact).
    """

    def __init__(self, dim: int, groups: int = 1, eps: float = 1e-5):
        super().__init__()
        if dim % groups:
            raise ValueError(f"GatedRMSNorm: dim {dim} is not divisible by groups {groups}")
        self.weight = nn.Parameter(torch.ones(dim))
        self.groups = groups
        self.eps = eps

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        dtype = y.dtype
        gated = y.float() * nn.functional.silu(z.float())
        grouped = gated.unflatten(-1, (self.groups, -1))
        grouped = grouped * torch.rsqrt(grouped.pow(2).mean(-1, keepdim=True) + self.eps)
        return (grouped.flatten(-2) * self.weight.float()).to(dtype)
