"""Validated training configuration: one YAML file = model shape + optimizer + schedule + data mixture.

Every section is a strict pydantic model, so a typo in a config fails at start-up with the file and the
key named, not hours into a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

AttentionType = Literal["mha", "gqa", "cca", "ccgqa"]


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the file and the offending key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MambaConfig(_Strict):
    d_state: int = Field(128, ge=1)
    d_conv: int = Field(4, ge=1)
    expand: int = Field(2, ge=1)
    head_dim: int = Field(64, ge=1)
    ngroups: int = Field(1, ge=1)
    chunk_size: int = Field(256, ge=1)


class AttentionConfig(_Strict):
    """The shared block's attention. Heads are MHA heads over the 2*d_model input: head_dim = 2*d / num_heads.

    gqa: num_kv_heads key/value heads. cca/ccgqa: the latent keeps head_dim and has num_heads/compression
    query heads; cca uses as many kv heads, ccgqa num_kv_heads.
    """

    type: AttentionType = "mha"
    num_heads: int = Field(32, ge=1)
    num_kv_heads: int | None = Field(None, ge=1)
    compression: int = Field(1, ge=1)
    rope: bool = True
    rope_theta: float = 10000.0
    qkv_adapters: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> "AttentionConfig":
        if self.type in ("gqa", "ccgqa") and self.num_kv_heads is None:
            raise ValueError(f"attention type {self.type} needs num_kv_heads")
        if self.type in ("cca", "ccgqa") and self.num_heads % self.compression:
            raise ValueError(f"num_heads {self.num_heads} is not divisible by compression {self.compression}")
        if self.type in ("mha", "gqa") and self.compression != 1:
            raise ValueError(f"compression applies to cca/ccgqa only, not {self.type}")
        return self

    def layout(self, d_model: int) -> tuple[int, int, int]:
        """(query heads, kv heads, head dim) of the attention actually built."""
        width = 2 * d_model
        if width % self.num_heads:
            raise ValueError(f"2*d_model={width} is not divisible by attention num_heads={self.num_heads}")
        head_dim = width // self.num_heads
        if self.type == "mha":
            return self.num_heads, self.num_heads, head_dim
        if self.type == "gqa":
            return self.num_heads, int(self.num_kv_heads), head_dim
        latent_heads = self.num_heads // self.compression
        kv = latent_heads if self.type == "cca" else int(self.num_kv_heads)
        if latent_heads % kv:
            raise ValueError(f"{latent_heads} latent query heads are not a multiple of num_kv_heads={kv}")
        return latent_heads, kv, head_dim


class ModelConfig(_Strict):
    name: str = "zamba2"
    vocab_size: int = Field(32000, ge=2)
    d_model: int = Field(ge=1)
    n_layers: int = Field(ge=1)
    hybrid_layers: list[int] = Field(description="layer indices where the shared transformer block runs")
    num_mem_blocks: int = Field(1, ge=1, description="shared blocks, used in turn (ABAB)")
    ffn_dim: int | None = Field(None, ge=1, description="shared MLP width; default 4 * d_model")
    adapter_rank: int = Field(128, ge=0, description="per-position LoRA rank on the shared MLP input; 0 = none")
    norm_eps: float = 1e-5
    init_std: float = 0.02
    activation_checkpointing: bool = False
    mamba: MambaConfig = MambaConfig()
    attention: AttentionConfig = AttentionConfig()

    @model_validator(mode="after")
    def _consistent(self) -> "ModelConfig":
        layers = self.hybrid_layers
        if sorted(set(layers)) != layers:
            raise ValueError(f"hybrid_layers must be strictly increasing, got {layers}")
        if layers and not (0 <= layers[0] and layers[-1] < self.n_layers):
            raise ValueError(f"hybrid_layers {layers} fall outside 0..{self.n_layers - 1}")
        self.attention.layout(self.d_model)
        if (self.mamba.expand * self.d_model) % self.mamba.head_dim:
            raise ValueError(f"mamba expand*d_model is not divisible by mamba head_dim={self.mamba.head_dim}")
        return self

    @property
    def ffn(self) -> int:
        return self.ffn_dim or 4 * self.d_model


class OptimConfig(_Strict):
    lr: float = Field(3e-4, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine floor as a fraction of lr")
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = Field(1.0, ge=0, description="max global grad norm; 0 disables clipping")


class TrainConfig(_Strict):
    seq_len: int = Field(ge=2)
    micro_batch_size: int = Field(ge=1)
    grad_accum: int = Field(1, ge=1)
    steps: int = Field(ge=1)
    seed: int = 0
    log_every: int = Field(10, ge=1)
    ckpt_every: int = Field(500, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes per rank")
    document_masking: bool = True
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    compile: bool = False
    parallel: Literal["auto", "ddp", "fsdp"] = "auto"
    peak_tflops: float | None = Field(None, gt=0, description="per-device peak for MFU; guessed from the GPU name")


class DataConfig(_Strict):
    weights: dict[str, float] | None = Field(None, description="override the manifest's mixture weights per source")


class RunConfig(_Strict):
    model: ModelConfig
    train: TrainConfig
    optim: OptimConfig = OptimConfig()
    data: DataConfig = DataConfig()


def _format(path: str, error: ValidationError) -> str:
    lines = [f"{path}: invalid training config"]
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path, overrides: dict | None = None) -> RunConfig:
    """Read and validate a YAML config; `overrides` ({"train": {"steps": 5}}) are merged on top."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: training config not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with model/train/optim/data sections")
    for section, values in (overrides or {}).items():
        raw[section] = {**(raw.get(section) or {}), **values}
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format(str(path), exc)) from None
