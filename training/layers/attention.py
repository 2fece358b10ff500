"""Multi-head and grouped-query attention with RoPE, on `F.scaled_dot_product_attention`.

SDPA picks the kernel: FlashAttention on CUDA when there is no explicit mask (one document per row,
`is_causal=True`), the memory-efficient kernel for document masks, and the math kernel on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from training.layers.lora import project
from training.layers.rope import apply_rope, rope_tables
from training.layers.segments import document_causal_mask, normalize_segments


@dataclass
class Packing:
    """Per-batch document structure, computed once and shared by every layer of a forward pass.

    segments: normalized document ids (batch, length) or None when each row is one document;
    attn_mask: the boolean document-causal mask, or None for plain causal attention.
    """

    segments: torch.Tensor | None
    attn_mask: torch.Tensor | None

    @classmethod
    def from_segment_ids(cls, segment_ids: torch.Tensor | None) -> "Packing":
        segments = normalize_segments(segment_ids)
        if segments is None or not bool(segments[:, -1].any()):
            return cls(None, None)  # one document per row: causal masking is exact, flash applies
        return cls(segments, document_causal_mask(segments))


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, packing: Packing) -> torch.Tensor:
    """Causal attention over (batch, heads, length, dim) tensors; kv heads may be fewer (GQA)."""
    return F.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=packing.attn_mask,
        is_causal=packing.attn_mask is None,
        enable_gqa=k.shape[1] != q.shape[1],
    )


class ProjectedAttention(nn.Module):
    """The q/k/v/o projections every attention variant here shares, with optional per-call adapters."""

    def __init__(self, in_dim: int, out_dim: int, num_heads: int, num_kv_heads: int, head_dim: int):
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(f"{type(self).__name__}: num_heads {num_heads} is not a multiple of "
                             f"num_kv_heads {num_kv_heads}")
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.q_proj = nn.Linear(in_dim, num_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(in_dim, num_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(in_dim, num_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * head_dim, out_dim, bias=False)

    @property
    def projection_widths(self) -> dict[str, int]:
        """Output width of each input projection (what a q/k/v adapter must produce)."""
        kv = self.num_kv_heads * self.head_dim
        return {"q": self.num_heads * self.head_dim, "k": kv, "v": kv}

    def project_qkv(
        self, x: torch.Tensor, adapters: Mapping[str, nn.Module] | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v as (batch, length, width), each plus its adapter when one is given."""
        adapters = dict(adapters or {})
        q = project(self.q_proj, x, adapters.get("q"))
        k = project(self.k_proj, x, adapters.get("k"))
        return q, k, project(self.v_proj, x, adapters.get("v"))

    def output(self, out: torch.Tensor) -> torch.Tensor:
        """(batch, heads, length, head_dim) attention output -> o_proj."""
        batch, _, length, _ = out.shape
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1))


class Attention(ProjectedAttention):
    """MHA when num_kv_heads == num_heads, GQA otherwise. Input and output widths may differ (Zamba2: 2d -> d)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        rope_theta: float = 10000.0,
        use_rope: bool = True,
    ):
        super().__init__(in_dim, out_dim, num_heads, num_kv_heads, head_dim)
        self.rope_theta, self.use_rope = rope_theta, use_rope

    def forward(
        self, x: torch.Tensor, packing: Packing, adapters: Mapping[str, nn.Module] | None = None
    ) -> torch.Tensor:
        batch, length, _ = x.shape
        q, k, v = self.project_qkv(x, adapters)
        q = q.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, length, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(batch, length, self.num_kv_heads, self.head_dim).transpose(1, 2)
        if self.use_rope:
            cos, sin = rope_tables(length, self.head_dim, self.rope_theta, x.device)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return self.output(sdpa(q, k, v, packing))
