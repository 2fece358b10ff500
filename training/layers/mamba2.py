"""The Mamba2 layer (Dao & Gu, 2024) with the chunked SSD scan in pure PyTorch.

The scan is the "state space duality" algorithm: inside a chunk of Q positions the SSM is a masked
quadratic form (like attention with a decay mask); between chunks only one (heads, head_dim, d_state)
state per chunk is passed on. Every step is a batched matmul, so it runs well on GPU tensor cores and on
CPU without custom kernels. `segments` (document ids of a packed row) reset both the state and the
causal conv at every document start.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from training.layers.norm import GatedRMSNorm
from training.layers.segments import causal_conv1d


def segsum(x: torch.Tensor) -> torch.Tensor:
    """`out[..., i, j] = x[..., j+1] + ... + x[..., i]` for j <= i, -inf above the diagonal.

    Built from a masked cumulative sum rather than differences of one cumsum, which would lose
    precision when the running sum is large.
    """
    length = x.shape[-1]
    x = x[..., None].expand(*x.shape, length)
    strict = torch.ones(length, length, dtype=torch.bool, device=x.device).tril(-1)
    x = x.masked_fill(~strict, 0.0)
    out = x.cumsum(dim=-2)
    lower = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
    return out.masked_fill(~lower, float("-inf"))


def ssd_chunked(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int,
    segments: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T; y_t = h_t C_t` over the sequence, chunk by chunk.

    Shapes: x (b, l, h, p), dt (b, l, h) (after softplus), A (h,) negative, B and C (b, l, g, n) with h a
    multiple of g, segments (b, l) non-decreasing document ids or None, initial_state (b, h, p, n).
    Returns y (b, l, h, p) and the final state (b, h, p, n). Computed in fp32 even under autocast: the
    decay products exp(segsum) lose too much in bf16 (max error ~6e-2 on unit-scale inputs).
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        return _ssd_fp32(x, dt, A, B, C, chunk_size, segments, initial_state)


def _ssd_fp32(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int,
    segments: torch.Tensor | None,
    initial_state: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    batch, length, heads, head_dim = x.shape
    groups, d_state = B.shape[2], B.shape[3]
    if heads % groups:
        raise ValueError(f"ssd_chunked: {heads} heads are not divisible by {groups} groups")
    rep = heads // groups
    x, dt, A, B, C = x.float(), dt.float(), A.float(), B.float(), C.float()
    pad = (-length) % chunk_size
    if pad:
        # Padded steps have dt = 0: no input and no decay, so the final state is unchanged.
        x, dt = F.pad(x, (0, 0, 0, 0, 0, pad)), F.pad(dt, (0, 0, 0, pad))
        B, C = F.pad(B, (0, 0, 0, 0, 0, pad)), F.pad(C, (0, 0, 0, 0, 0, pad))
        if segments is not None:
            segments = F.pad(segments, (0, pad), mode="replicate")
    chunks = x.shape[1] // chunk_size
    q = chunk_size

    X = (x * dt[..., None]).view(batch, chunks, q, groups, rep, head_dim)
    dA = (dt * A).view(batch, chunks, q, groups, rep).permute(0, 3, 4, 1, 2)  # (b, g, r, c, q)
    Bc = B.view(batch, chunks, q, groups, d_state)
    Cc = C.view(batch, chunks, q, groups, d_state)
    A_cumsum = dA.cumsum(dim=-1)

    seg = None if segments is None else segments.view(batch, chunks, q)
    seg_end = None if seg is None else seg[:, :, -1]  # (b, c)

    # 1. within each chunk: y = (C B^T o L) X, L the decay mask (zero across documents).
    decay = torch.exp(segsum(dA))  # (b, g, r, c, q, q)
    if seg is not None:
        decay = decay * (seg[:, :, :, None] == seg[:, :, None, :])[:, None, None].to(decay.dtype)
    CB = torch.einsum("bclgn,bcsgn->bgcls", Cc, Bc)
    y_diag = torch.einsum("bgrcls,bcsgrp->bclgrp", CB[:, :, None] * decay, X)

    # 2. each chunk's contribution to the state at its end (only the document still open there).
    decay_to_end = torch.exp(A_cumsum[..., -1:] - A_cumsum)  # (b, g, r, c, q)
    if seg is not None:
        decay_to_end = decay_to_end * (seg == seg_end[..., None])[:, None, None].to(decay_to_end.dtype)
    X_to_end = X * decay_to_end.permute(0, 3, 4, 1, 2)[..., None]
    chunk_states = torch.einsum("bcsgn,bcsgrp->bcgrpn", Bc, X_to_end)

    # 3. pass states between chunks: state entering chunk z = sum_j decay(j -> z) * state_j.
    if initial_state is None:
        init = torch.zeros_like(chunk_states[:, :1])
    else:
        init = initial_state.float().view(batch, 1, groups, rep, head_dim, d_state)
    states = torch.cat([init, chunk_states], dim=1)  # (b, c+1, g, r, p, n)
    chunk_decay = torch.exp(segsum(F.pad(A_cumsum[..., -1], (1, 0))))  # (b, g, r, c+1, c+1)
    if seg is not None:
        # The state entering chunk z belongs to the document open at the end of chunk z-1 (for z = 0,
        # the document of the first position); a contribution survives only within its document.
        owner = torch.cat([seg[:, :1, 0], seg_end], dim=1)  # (b, c+1)
        chunk_decay = chunk_decay * (owner[:, :, None] == owner[:, None, :])[:, None, None].to(chunk_decay.dtype)
    new_states = torch.einsum("bgrzj,bjgrpn->bzgrpn", chunk_decay, states)
    entering, final_state = new_states[:, :-1], new_states[:, -1]

    # 4. the entering state's contribution to each position of the chunk.
    decay_from_start = torch.exp(A_cumsum)  # (b, g, r, c, q)
    if seg is not None:
        decay_from_start = decay_from_start * (seg == owner[:, :-1, None])[:, None, None].to(decay_from_start.dtype)
    y_off = torch.einsum("bclgn,bcgrpn->bclgrp", Cc, entering) * decay_from_start.permute(0, 3, 4, 1, 2)[..., None]

    y = (y_diag + y_off).reshape(batch, chunks * q, heads, head_dim)[:, :length]
    return y, final_state.reshape(batch, heads, head_dim, d_state)


class Mamba2(nn.Module):
    """in_proj -> [z | xBC | dt]; causal depthwise conv + SiLU on xBC; SSD scan + D skip; gated norm; out_proj."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 128,
        d_conv: int = 4,
        expand: int = 2,
        head_dim: int = 64,
        ngroups: int = 1,
        chunk_size: int = 256,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        a_init_range: tuple[float, float] = (1.0, 16.0),
        conv_bias: bool = True,
        bias: bool = False,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.d_inner = expand * d_model
        if self.d_inner % head_dim:
            raise ValueError(f"Mamba2: expand*d_model={self.d_inner} is not divisible by head_dim={head_dim}")
        self.heads = self.d_inner // head_dim
        if self.heads % ngroups:
            raise ValueError(f"Mamba2: {self.heads} heads are not divisible by ngroups={ngroups}")
        self.head_dim, self.d_state, self.ngroups, self.chunk_size = head_dim, d_state, ngroups, chunk_size
        self.conv_dim = self.d_inner + 2 * ngroups * d_state
        self.in_proj = nn.Linear(d_model, self.d_inner + self.conv_dim + self.heads, bias=bias)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim, bias=conv_bias)
        # dt initialised log-uniformly in [dt_min, dt_max]; dt_bias is its inverse softplus.
        dt = torch.exp(torch.rand(self.heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.empty(self.heads).uniform_(*a_init_range)))
        self.D = nn.Parameter(torch.ones(self.heads))
        self.norm = GatedRMSNorm(self.d_inner, groups=ngroups, eps=norm_eps)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def forward(self, hidden: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, _ = hidden.shape
        z, xBC, dt = self.in_proj(hidden).split([self.d_inner, self.conv_dim, self.heads], dim=-1)
        xBC = F.silu(causal_conv1d(xBC, self.conv1d.weight, self.conv1d.bias, self.conv_dim, segments))
        x, B, C = xBC.split([self.d_inner, self.ngroups * self.d_state, self.ngroups * self.d_state], dim=-1)
        x = x.view(batch, length, self.heads, self.head_dim)
        dt = F.softplus(dt.float() + self.dt_bias.float())
        A = -torch.exp(self.A_log.float())
        y, _ = ssd_chunked(
            x,
            dt,
            A,
            B.view(batch, length, self.ngroups, self.d_state),
            C.view(batch, length, self.ngroups, self.d_state),
            self.chunk_size,
            segments,
        )
        y = y + x.float() * self.D.float()[:, None]
        y = self.norm(y.reshape(batch, length, self.d_inner).to(hidden.dtype), z)
        return self.out_proj(y)
