"""Attention layers (MHA, GQA, CCA, CCGQA): causality, document isolation, reductions, cost reports."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from training.layers.attention import Attention, Packing
from training.layers.cca import CCA, attention_costs
from training.layers.lora import LoRA
from training.layers.rope import apply_rope, rope_tables

E = 32


def make(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "mha":
        return Attention(E, E, 4, 4, 8)
    if kind == "gqa":
        return Attention(E, E, 4, 2, 8)
    if kind == "cca":
        return CCA(E, E, 2, 2, 8)  # latent width 16 = E / 2
    return CCA(E, E, 4, 2, 4)  # ccgqa: 4 query heads share 2 kv heads in a 16-wide latent


KINDS = ["mha", "gqa", "cca", "ccgqa"]


def segment_ids(lengths: list[int]) -> torch.Tensor:
    return torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])[None]


@pytest.mark.parametrize("kind", KINDS)
def test_no_position_sees_a_later_token(kind):
    layer = make(kind).eval()
    x = torch.randn(2, 24, E)
    for cut in (1, 9, 23):
        y = x.clone()
        y[:, cut:] = torch.randn(2, 24 - cut, E)
        with torch.no_grad():
            a = layer(x, Packing.from_segment_ids(None))
            b = layer(y, Packing.from_segment_ids(None))
        torch.testing.assert_close(a[:, :cut], b[:, :cut], atol=1e-6, rtol=0)
        assert not torch.allclose(a[:, cut:], b[:, cut:])


@pytest.mark.parametrize("kind", KINDS)
def test_packed_documents_do_not_see_each_other(kind):
    layer = make(kind).eval()
    lengths = [5, 1, 11, 7]
    docs = [torch.randn(1, n, E) for n in lengths]
    with torch.no_grad():
        packed = layer(torch.cat(docs, dim=1), Packing.from_segment_ids(segment_ids(lengths)))
        separate = torch.cat([layer(d, Packing.from_segment_ids(None)) for d in docs], dim=1)
        unmasked = layer(torch.cat(docs, dim=1), Packing.from_segment_ids(None))
    torch.testing.assert_close(packed, separate, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(unmasked[:, 6:], separate[:, 6:], atol=1e-4)


def test_single_document_rows_use_plain_causal_attention():
    packing = Packing.from_segment_ids(torch.zeros(2, 8, dtype=torch.long))
    assert packing.attn_mask is None and packing.segments is None
    packing = Packing.from_segment_ids(torch.tensor([[0] * 8, [0] * 3 + [1] * 5]))
    assert packing.attn_mask.shape == (2, 1, 8, 8)
    assert not packing.attn_mask[1, 0, 4, 2] and packing.attn_mask[1, 0, 4, 3]


def assert_layer_is(layer, x, q, k, v, rotary_dim):
    """layer(x) == o_proj(causal softmax attention of q (b, l, h, d) over k, v (b, l, h_kv, d)), written out."""
    group = q.shape[2] // k.shape[2]
    q, k, v = q.transpose(1, 2), k.transpose(1, 2).repeat_interleave(group, 1), v.transpose(1, 2).repeat_interleave(group, 1)
    if rotary_dim:
        cos, sin = rope_tables(q.shape[2], rotary_dim, layer.rope_theta, x.device)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~torch.ones(q.shape[2], q.shape[2], dtype=torch.bool).tril(), float("-inf"))
    ref = layer.o_proj((scores.softmax(-1) @ v).transpose(1, 2).flatten(2))
    with torch.no_grad():
        torch.testing.assert_close(layer(x, Packing(None, None)), ref, atol=1e-5, rtol=1e-4)


def test_gqa_matches_explicit_attention_with_shared_kv_heads():
    layer = make("gqa").eval()
    x = torch.randn(2, 10, E)
    q = layer.q_proj(x).view(2, 10, 4, 8)
    k, v = layer.k_proj(x).view(2, 10, 2, 8), layer.v_proj(x).view(2, 10, 2, 8)
    assert_layer_is(layer, x, q, k, v, rotary_dim=8)


def test_cca_with_c1_and_no_convolutions_is_attention_with_qk_norm():
    torch.manual_seed(3)
    heads, d = 4, 8  # n_q * d = 32 = E: compression 1
    layer = CCA(E, E, heads, heads, d, use_conv=False, qk_mean=False, value_shift=False).eval()
    with torch.no_grad():
        layer.k_temperature.copy_(torch.randn(heads) * 0.3)
    x = torch.randn(2, 12, E)
    q = F.normalize(layer.q_proj(x).view(2, 12, heads, d), dim=-1) * math.sqrt(d)
    k = F.normalize(layer.k_proj(x).view(2, 12, heads, d), dim=-1) * math.sqrt(d) * layer.k_temperature.exp()[:, None]
    v = layer.v_proj(x).view(2, 12, heads, d)
    assert_layer_is(layer, x, q, k, v, rotary_dim=d // 2)  # partial RoPE: half the dims


def test_qk_mean_and_value_shift_follow_their_definitions():
    torch.manual_seed(4)
    layer = CCA(E, E, 4, 2, 4, use_conv=False, qk_mean=True, value_shift=True, rope_fraction=0.0).eval()
    x = torch.randn(1, 6, E)
    q_pre = layer.q_proj(x).view(1, 6, 4, 4)
    k_pre = layer.k_proj(x).view(1, 6, 2, 4)
    q = q_pre + (q_pre + k_pre.repeat_interleave(2, dim=2)) / 2
    k = k_pre + (k_pre + q_pre.view(1, 6, 2, 2, 4).mean(3)) / 2
    v = layer.v_proj(x).view(1, 6, 2, 4)
    v = torch.cat([v[..., :2], torch.cat([torch.zeros_like(v[:, :1, :, 2:]), v[:, :-1, :, 2:]], dim=1)], dim=-1)
    assert_layer_is(layer, x, F.normalize(q, dim=-1) * 2, F.normalize(k, dim=-1) * 2, v, rotary_dim=0)


@pytest.mark.parametrize("kind", KINDS)
def test_costs_count_the_parameters_the_module_has(kind):
    layer = make(kind)
    costs = attention_costs(kind, E, E, layer.num_heads, layer.num_kv_heads, layer.head_dim, context=100)
    assert costs.params == sum(p.numel() for p in layer.parameters())


def test_costs_shrink_by_the_compression_factor():
    E_, heads, d, L = 2048, 16, 128, 8192
    mha = attention_costs("mha", E_, E_, heads, heads, d, context=L / 2)
    for C in (2, 4, 8):
        cca = attention_costs("cca", E_, E_, heads // C, heads // C, d, context=L / 2)
        assert mha.kv_cache_bytes_per_token == C * cca.kv_cache_bytes_per_token
        assert mha.core_flops_per_token == C * cca.core_flops_per_token
        assert mha.params / C < cca.params < 1.1 * mha.params / C  # q, k, v, o shrink by C; convs add a little
    ccgqa = attention_costs("ccgqa", E_, E_, 8, 2, d, context=L / 2)
    assert mha.kv_cache_bytes_per_token == 8 * ccgqa.kv_cache_bytes_per_token
    with pytest.raises(ValueError, match="unknown attention type"):
        attention_costs("mla", E_, E_, 8, 2, d, context=1)


@pytest.mark.parametrize("kind", KINDS)
def test_adapters_change_the_projections_only_when_trained(kind):
    layer = make(kind).eval()
    adapters = {name: LoRA(E, width, 3) for name, width in layer.projection_widths.items()}
    x = torch.randn(1, 7, E)
    packing = Packing(None, None)
    with torch.no_grad():
        base = layer(x, packing)
        torch.testing.assert_close(layer(x, packing, adapters), base)  # up-projections start at zero
        for adapter in adapters.values():
            adapter.up.weight.normal_()
        assert not torch.allclose(layer(x, packing, adapters), base)


def test_bad_head_layouts_are_refused():
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        CCA(E, E, 3, 2, 8)
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        Attention(E, E, 4, 3, 8)
