"""Zamba2: a Mamba2 stack with shared transformer blocks at a few "hybrid" positions (Glorioso et al., 2024).

At hybrid position l the shared block T reads concat(h, token embeddings) (width 2d) -> RMSNorm ->
attention (2d -> d) -> RMSNorm -> gated MLP; a per-position linear maps its output into the residual
stream of that position's Mamba2 layer:

    h_next = h + Mamba2(RMSNorm(h + Linear_l(T(h, emb))))

`num_mem_blocks` shared blocks are used in turn (ABAB); each position owns LoRA adapters on the shared
MLP's input projection (and optionally on q, k, v), so tied weights still specialise per depth.
Input and output embeddings are tied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from training.config import ModelConfig
from training.layers.attention import Attention, Packing
from training.layers.cca import CCA, attention_costs
from training.layers.lora import LoRA, project
from training.layers.mamba2 import Mamba2


class GatedMLP(nn.Module):
    """`down(gelu(gate) * up)` with gate and up in one projection (the adapter adds to both)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor, adapter: nn.Module | None = None) -> torch.Tensor:
        gate, up = project(self.gate_up, x, adapter).chunk(2, dim=-1)
        return self.down(F.gelu(gate) * up)


def build_attention(cfg: ModelConfig) -> nn.Module:
    heads, kv_heads, head_dim = cfg.attention.layout(cfg.d_model)
    att = cfg.attention
    if att.type in ("mha", "gqa"):
        return Attention(2 * cfg.d_model, cfg.d_model, heads, kv_heads, head_dim, att.rope_theta, att.rope)
    return CCA(2 * cfg.d_model, cfg.d_model, heads, kv_heads, head_dim, att.rope_theta, 0.5 if att.rope else 0.0)


class SharedBlock(nn.Module):
    """The tied transformer block; has no residual of its own (its output feeds the Mamba2 input)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_norm = nn.RMSNorm(2 * cfg.d_model, eps=cfg.norm_eps)
        self.attn = build_attention(cfg)
        self.pre_ff_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = GatedMLP(cfg.d_model, cfg.ffn)

    def forward(self, h: torch.Tensor, emb: torch.Tensor, packing: Packing, slot: "HybridSlot") -> torch.Tensor:
        x = self.input_norm(torch.cat([h, emb], dim=-1))
        x = self.attn(x, packing, slot.qkv_adapters)  # bf16 under autocast: match the norm's weight for its fused kernel
        return self.mlp(self.pre_ff_norm(x.to(self.pre_ff_norm.weight.dtype)), slot.mlp_adapter)


class HybridSlot(nn.Module):
    """What one hybrid position owns: its output linear and its adapters on the shared block."""

    def __init__(self, cfg: ModelConfig, attention_widths: dict[str, int]):
        super().__init__()
        self.linear = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        rank = cfg.adapter_rank
        self.mlp_adapter = LoRA(cfg.d_model, 2 * cfg.ffn, rank) if rank else None
        self.qkv_adapters = (
            nn.ModuleDict({k: LoRA(2 * cfg.d_model, w, rank) for k, w in attention_widths.items()})
            if rank and cfg.attention.qkv_adapters
            else None
        )


class MambaLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        m = cfg.mamba
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mamba = Mamba2(
            cfg.d_model, m.d_state, m.d_conv, m.expand, m.head_dim, m.ngroups, m.chunk_size, norm_eps=cfg.norm_eps
        )

    def forward(self, h: torch.Tensor, injected: torch.Tensor | None, packing: Packing) -> torch.Tensor:
        x = h if injected is None else h + injected
        return h + self.mamba(self.norm(x), packing.segments)


class Zamba2(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(MambaLayer(cfg) for _ in range(cfg.n_layers))
        self.shared = nn.ModuleList(SharedBlock(cfg) for _ in range(cfg.num_mem_blocks))
        widths = self.shared[0].attn.projection_widths
        self.slots = nn.ModuleList(HybridSlot(cfg, widths) for _ in cfg.hybrid_layers)
        self.slot_of_layer = {layer: i for i, layer in enumerate(cfg.hybrid_layers)}
        self.final_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self._init_weights()

    def _init_weights(self) -> None:
        """Normal(0, std) for projections and embeddings, output projections scaled by 1/sqrt(2 * layers)."""
        std = self.cfg.init_std
        out_std = std / (2 * self.cfg.n_layers) ** 0.5
        nn.init.normal_(self.embed.weight, std=std)
        for name, module in self.named_modules():
            if not isinstance(module, nn.Linear) or name.endswith(".up"):
                continue  # LoRA up-projections stay zero
            last = name.rsplit(".", 1)[-1]
            nn.init.normal_(module.weight, std=out_std if last in ("out_proj", "o_proj", "down", "linear") else std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def block_of_slot(self, slot: int) -> SharedBlock:
        return self.shared[slot % len(self.shared)]

    def _layer(self, i: int, h: torch.Tensor, emb: torch.Tensor, packing: Packing) -> torch.Tensor:
        injected = None
        slot_index = self.slot_of_layer.get(i)
        if slot_index is not None:
            slot = self.slots[slot_index]
            injected = slot.linear(self.block_of_slot(slot_index)(h, emb, packing, slot))
        return self.layers[i](h, injected, packing)

    def hidden_states(self, input_ids: torch.Tensor, segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        packing = Packing.from_segment_ids(segment_ids)
        emb = self.embed(input_ids)
        h = emb
        for i in range(len(self.layers)):
            if self.cfg.activation_checkpointing and self.training:
                h = checkpoint(self._layer, i, h, emb, packing, use_reentrant=False)
            else:
                h = self._layer(i, h, emb, packing)
        return self.final_norm(h)

    def forward(
        self,
        input_ids: torch.Tensor,
        segment_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (batch, length, vocab), or the mean next-token cross-entropy when labels are given."""
        logits = F.linear(self.hidden_states(input_ids, segment_ids), self.embed.weight)
        if labels is None:
            return logits
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)

    # ---- accounting ----------------------------------------------------------------------------
    def num_params(self) -> int:
        """Unique parameters (tied embeddings and shared blocks counted once)."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int) -> int:
        """Forward FLOPs per token of a causal sequence of seq_len (matmuls, SSD scan, attention core).

        Shared blocks count once per position they run at; training costs about 3x this.
        """
        cfg, m = self.cfg, self.cfg.mamba
        layer = self.layers[0].mamba
        matmul = layer.in_proj.weight.numel() + layer.out_proj.weight.numel()
        q = min(m.chunk_size, seq_len)
        ssd = 2 * q * m.ngroups * m.d_state + 2 * q * layer.d_inner + 4 * layer.d_inner * m.d_state
        conv = 2 * layer.conv_dim * m.d_conv
        flops = cfg.n_layers * (2 * matmul + ssd + conv)
        heads, kv_heads, head_dim = cfg.attention.layout(cfg.d_model)
        att = attention_costs(
            cfg.attention.type, 2 * cfg.d_model, cfg.d_model, heads, kv_heads, head_dim, context=seq_len / 2
        )
        block = self.shared[0]
        mlp = block.mlp.gate_up.weight.numel() + block.mlp.down.weight.numel()
        for slot in self.slots:
            adapters = sum(p.numel() for p in slot.parameters()) - slot.linear.weight.numel()
            flops += att.flops_per_token + 2 * (mlp + adapters + slot.linear.weight.numel())
        return flops + 2 * cfg.vocab_size * cfg.d_model
