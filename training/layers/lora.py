"""Low-rank adapters: per-position weights on top of Zamba2's shared (tied) blocks."""

from __future__ import annotations

import torch
from torch import nn


class LoRA(nn.Module):
    """`up(down(x))`, rank r. `up` starts at zero, so every position starts as the plain shared block."""

    def __init__(self, in_dim: int, out_dim: int, rank: int):
        super().__init__()
        self.down = nn.Linear(in_dim, rank, bias=False)
        self.up = nn.Linear(rank, out_dim, bias=False)
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


def project(linear: nn.Linear, x: torch.Tensor, adapter: nn.Module | None) -> torch.Tensor:
    """A projection plus its optional adapter."""
    out = linear(x)
    return out if adapter is None else out + adapter(x)
