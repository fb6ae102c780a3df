"""Writing checkpoints in the exact official layout with seeded random weights.

Used by ``acetui demo`` (a small model the app can run anywhere), by the tests (tiny models in every
storage form the loader must accept) and by the benchmark (real 2B/XL shapes without the real files).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from acetui.model.config import DecoderConfig
from acetui.model.decoder import AceStepDecoder

TINY = DecoderConfig(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    sliding_window=4,
)
DEMO = DecoderConfig(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=8,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
    sliding_window=16,
)
XL_LIKE = DecoderConfig(
    hidden_size=64,
    intermediate_size=160,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=2,
    head_dim=16,
    sliding_window=4,
    encoder_hidden_size=48,
)
FULL_2B = DecoderConfig()
FULL_XL = DecoderConfig(
    hidden_size=2560,
    intermediate_size=9728,
    num_hidden_layers=32,
    num_attention_heads=32,
    encoder_hidden_size=2048,
)

# Fields the official config.json carries that the decoder does not read; written so files look real.
_OTHER_FIELDS = {
    "architectures": ["AceStepConditionGenerationModel"],
    "model_type": "acestep",
    "attention_dropout": 0.0,
    "data_proportion": 0.5,
    "rope_scaling": None,
    "use_cache": True,
    "max_position_embeddings": 32768,
    "vocab_size": 64003,
}


def random_state(config: DecoderConfig, seed: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every decoder tensor with the ``decoder.`` prefix: scaled normal weights, non-trivial norms and tables."""
    generator = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {name: tuple(t.shape) for name, t in AceStepDecoder(config).state_dict().items()}
    state = {}
    for name, shape in shapes.items():
        values = torch.randn(shape, generator=generator)
        if name.endswith("norm.weight") or name.endswith("norm_out.weight"):
            values = 1.0 + 0.2 * values
        elif "scale_shift_table" in name or name.endswith("bias"):
            values = 0.1 * values
        else:
            values = values / math.sqrt(math.prod(shape[1:]))
        state[f"decoder.{name}"] = values.to(dtype)
    return state


def _other_components(config: DecoderConfig, seed: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Encoder/tokenizer keys that reuse decoder-like fragments, to prove the loader selects by prefix."""
    generator = torch.Generator().manual_seed(seed + 1)
    width = config.condition_width
    names = [
        "encoder.layers.0.self_attn.q_proj.weight",
        "encoder.lyric_encoder.layers.0.self_attn.k_proj.weight",
        "tokenizer.layers.0.self_attn.q_proj.weight",
        "detokenizer.layers.0.self_attn.q_proj.weight",
    ]
    tensors = {name: torch.randn(width, width, generator=generator).to(dtype) for name in names}
    tensors["null_condition_emb"] = torch.randn(1, 1, width, generator=generator).to(dtype)
    return tensors


def write_checkpoint(
    folder: Path,
    config: DecoderConfig,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.bfloat16,
    shards: int = 1,
    state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``config.json`` and weights (one file, or ``shards`` files plus an index) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    fields = {**_OTHER_FIELDS, **config.to_dict(), "dtype": str(dtype).removeprefix("torch.")}
    (folder / "config.json").write_text(json.dumps(fields, indent=2), encoding="utf-8")
    tensors = {
        **(state if state is not None else random_state(config, seed, dtype)),
        **_other_components(config, seed, dtype),
    }
    tensors = {name: tensor.contiguous() for name, tensor in tensors.items()}
    if shards == 1:
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return folder
    names = sorted(tensors)
    weight_map = {}
    for index in range(shards):
        shard_name = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        part = {name: tensors[name] for name in names[index::shards]}
        save_file(part, str(folder / shard_name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard_name))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index_doc = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index_doc, indent=2), encoding="utf-8")
    return folder
