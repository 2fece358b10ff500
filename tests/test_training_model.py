"""Zamba2 model: published shapes on the meta device, causality, document isolation, tied shared blocks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.config import ConfigError, ModelConfig, load_config
from training.models.zamba2 import Zamba2

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"


@pytest.mark.parametrize(
    "name,low,high,hybrid,blocks",
    [("1.2b", 1.1e9, 1.3e9, 6, 1), ("2.7b", 2.5e9, 2.9e9, 9, 2), ("7b", 6.8e9, 7.8e9, 13, 2)],
)
def test_published_shapes_have_their_size_class(name, low, high, hybrid, blocks):
    cfg = load_config(CONFIGS / f"zamba2-{name}.yaml").model
    with torch.device("meta"):
        model = Zamba2(cfg)
    assert low < model.num_params() < high
    assert len(model.slots) == hybrid and len(model.shared) == blocks
    assert model.layers[0].mamba.heads == 2 * cfg.d_model // 64
    # every non-embedding weight is used at least once per token
    assert model.flops_per_token(4096) > 2 * (model.num_params() - cfg.vocab_size * cfg.d_model)


def tiny(**changes) -> ModelConfig:
    base = load_config(CONFIGS / "zamba2-tiny.yaml").model.model_dump()
    base.update(vocab_size=97, d_model=32, n_layers=4, hybrid_layers=[1, 3])
    base["mamba"] = {**base["mamba"], "d_state": 8, "head_dim": 16, "chunk_size": 8}
    for key, value in changes.items():
        if isinstance(value, dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return ModelConfig.model_validate(base)


ATTENTIONS = [
    {"type": "mha"},
    {"type": "gqa", "num_kv_heads": 2},
    {"type": "cca", "compression": 2},
    {"type": "ccgqa", "compression": 1, "num_kv_heads": 2},
]


@pytest.mark.parametrize("attention", ATTENTIONS, ids=lambda a: a["type"])
def test_causal_and_documents_isolated(attention):
    torch.manual_seed(0)
    model = Zamba2(tiny(attention=attention)).eval()
    for slot in model.slots:  # make adapters matter
        for p in slot.parameters():
            torch.nn.init.normal_(p, std=0.1)
    ids = torch.randint(0, 97, (2, 30))
    changed = ids.clone()
    changed[:, 20:] = torch.randint(0, 97, (2, 10))
    lengths = [9, 1, 14, 6]
    docs = torch.split(ids[:1], lengths, dim=1)
    segments = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])[None]
    with torch.no_grad():
        a, b = model(ids), model(changed)
        packed = model(ids[:1], segments)
        separate = torch.cat([model(d) for d in docs], dim=1)
    torch.testing.assert_close(a[:, :20], b[:, :20], atol=1e-5, rtol=0)
    torch.testing.assert_close(packed, separate, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(a[:1, 9:], separate[:, 9:], atol=1e-3)


def test_loss_at_init_is_near_uniform_and_gradients_flow():
    torch.manual_seed(1)
    model = Zamba2(tiny())
    ids = torch.randint(0, 97, (3, 17))
    loss = model(ids[:, :-1], labels=ids[:, 1:])
    assert abs(loss.item() - torch.log(torch.tensor(97.0)).item()) < 0.3
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # LoRA up-projections start at zero, but their gradient is not zero
    assert model.slots[0].mlp_adapter.up.weight.grad.abs().sum() > 0


def test_shared_blocks_alternate_and_are_counted_once():
    model = Zamba2(tiny(hybrid_layers=[0, 1, 2, 3], num_mem_blocks=2))
    assert [model.block_of_slot(i) is model.shared[i % 2] for i in range(4)] == [True] * 4
    fewer = Zamba2(tiny(hybrid_layers=[1, 3], num_mem_blocks=2))
    slot_params = sum(p.numel() for p in model.slots[0].parameters())
    assert model.num_params() - fewer.num_params() == 2 * slot_params


def test_activation_checkpointing_gives_the_same_gradients():
    ids = torch.randint(0, 97, (2, 12))
    grads = []
    for flag in (False, True):
        torch.manual_seed(5)
        model = Zamba2(tiny(activation_checkpointing=flag))
        model(ids[:, :-1], labels=ids[:, 1:]).backward()
        grads.append(model.layers[0].mamba.in_proj.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_bad_model_configs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="strictly increasing"):
        tiny(hybrid_layers=[3, 1])
    with pytest.raises(ValueError, match="outside"):
        tiny(hybrid_layers=[1, 4])
    with pytest.raises(ValueError, match="num_kv_heads"):
        tiny(attention={"type": "gqa"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {d_model: 8, n_layers: 2, hybrid_layers: [1], bogus: 1}\ntrain: {seq_len: 8, micro_batch_size: 1, steps: 1}\n")
    with pytest.raises(ConfigError, match="model.bogus"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
