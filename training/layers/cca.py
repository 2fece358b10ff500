"""Compressed Convolutional Attention (CCA) and its grouped form CCGQA (Figliolia et al., 2025).

q, k and v are projected down to a latent space of width E/C (n_q query heads, n_k key/value heads,
head dim d) and the whole attention runs there, so parameters, KV cache and attention FLOPs all shrink by
about C. Short convolutions and a q-k mean restore the expressivity lost to compression:

1. a causal depthwise conv (kernel 2) over the sequence of the packed [q | k] channels,
2. a causal grouped conv (kernel 2) that mixes channels inside each head,
3. the q-k mean residual: q += (q_pre + k_pre repeated over its query group) / 2,
   k += (k_pre + q_pre averaged over the group) / 2,
4. value shift: half of each value head comes from the current token, half from the previous one,
5. q and k L2-normalized and scaled by sqrt(d), k times a learned per-kv-head temperature exp(t),
6. RoPE on half of each head's dims, causal attention, output projection back to E.

All convolutions and the value shift stop at document boundaries of packed rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from training.layers.attention import Packing, ProjectedAttention, sdpa
from training.layers.rope import apply_rope, rope_tables
from training.layers.segments import causal_conv1d, shift_right


class CCA(ProjectedAttention):
    """CCA when num_kv_heads == num_heads (the latent heads), CCGQA when fewer."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        rope_theta: float = 10000.0,
        rope_fraction: float = 0.5,
        use_conv: bool = True,
        qk_mean: bool = True,
        value_shift: bool = True,
    ):
        super().__init__(in_dim, out_dim, num_heads, num_kv_heads, head_dim)
        rotary_dim = int(head_dim * rope_fraction)
        if rotary_dim % 2 or head_dim % 2:
            raise ValueError(f"CCA: head_dim {head_dim} x rope_fraction {rope_fraction} must give an even width")
        self.group = num_heads // num_kv_heads
        self.rope_theta, self.rotary_dim = rope_theta, rotary_dim
        self.use_conv, self.qk_mean, self.value_shift = use_conv, qk_mean, value_shift
        channels = (num_heads + num_kv_heads) * head_dim
        if use_conv:
            self.conv_seq = nn.Conv1d(channels, channels, 2, groups=channels)
            self.conv_head = nn.Conv1d(channels, channels, 2, groups=num_heads + num_kv_heads)
        self.k_temperature = nn.Parameter(torch.zeros(num_kv_heads))

    def forward(
        self, x: torch.Tensor, packing: Packing, adapters: Mapping[str, nn.Module] | None = None
    ) -> torch.Tensor:
        batch, length, _ = x.shape
        segments = packing.segments
        q_pre, k_pre, v = self.project_qkv(x, adapters)
        q, k = q_pre, k_pre
        if self.use_conv:
            qk = torch.cat([q_pre, k_pre], dim=-1)
            qk = causal_conv1d(qk, self.conv_seq.weight, self.conv_seq.bias, qk.shape[-1], segments)
            qk = causal_conv1d(qk, self.conv_head.weight, self.conv_head.bias, self.num_heads + self.num_kv_heads, segments)
            q, k = qk.split([q_pre.shape[-1], k_pre.shape[-1]], dim=-1)
        q = q.view(batch, length, self.num_heads, self.head_dim)
        k = k.view(batch, length, self.num_kv_heads, self.head_dim)
        if self.qk_mean:
            q_heads = q_pre.view(batch, length, self.num_kv_heads, self.group, self.head_dim)
            k_heads = k_pre.view(batch, length, self.num_kv_heads, 1, self.head_dim)
            q = q + ((q_heads + k_heads) / 2).flatten(2, 3)
            k = k + ((k_heads[:, :, :, 0] + q_heads.mean(dim=3)) / 2)
        v = v.view(batch, length, self.num_kv_heads, self.head_dim)
        if self.value_shift:
            half = self.head_dim // 2
            v = torch.cat([v[..., :half], shift_right(v[..., half:], 1, segments)], dim=-1)

        scale = math.sqrt(self.head_dim)
        q = F.normalize(q, dim=-1) * scale
        k = F.normalize(k, dim=-1) * (scale * self.k_temperature.exp()[:, None]).to(k.dtype)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if self.rotary_dim:
            cos, sin = rope_tables(length, self.rotary_dim, self.rope_theta, x.device)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return self.output(sdpa(q, k, v, packing))


@dataclass(frozen=True)
class AttentionCosts:
    """Per layer: parameters, KV-cache bytes per cached token, forward FLOPs per token at a context."""

    params: int
    kv_cache_bytes_per_token: int
    decode_state_bytes: int
    projection_flops_per_token: int
    conv_flops_per_token: int
    core_flops_per_token: int

    @property
    def flops_per_token(self) -> int:
        return self.projection_flops_per_token + self.conv_flops_per_token + self.core_flops_per_token


def attention_costs(
    kind: str,
    in_dim: int,
    out_dim: int,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    context: float,
    bytes_per_value: int = 2,
) -> AttentionCosts:
    """Analytic costs of one attention layer (mha/gqa/cca/ccgqa) whose queries see `context` keys.

    For causal training or prefill of length L use context = L / 2 (flash kernels skip masked blocks).
    `decode_state_bytes` is CCA's constant per-sequence conv/value-shift state (no MHA equivalent).
    """
    q_width, kv_width = num_heads * head_dim, num_kv_heads * head_dim
    params = in_dim * (q_width + 2 * kv_width) + q_width * out_dim
    projection = 2 * params
    conv = 0
    decode_state = 0
    if kind in ("cca", "ccgqa"):
        channels = q_width + kv_width
        conv_params = channels * 2 + channels + channels * head_dim * 2 + channels
        params += conv_params + num_kv_heads
        conv = 2 * (channels * 2 + channels * head_dim * 2)
        decode_state = (2 * channels + kv_width // 2) * bytes_per_value
    elif kind not in ("mha", "gqa"):
        raise ValueError(f"unknown attention type {kind!r}; known: mha, gqa, cca, ccgqa")
    core = int(round(2 * 2 * context * q_width))  # q.k and p.v, 2 FLOPs per multiply-add
    return AttentionCosts(params, 2 * kv_width * bytes_per_value, decode_state, projection, conv, core)
