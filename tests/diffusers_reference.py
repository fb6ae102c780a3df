"""diffusers' AceStepTransformer1DModel as the independent numerical reference (test-only).

It is loaded from the same safetensors files with the name mapping of the reference document, so any
disagreement with acetui's decoder is a real difference in the forward pass or in loading.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel

from acetui.model.checkpoint import decoder_entries, iter_decoder_tensors
from acetui.model.config import DecoderConfig

_ATTENTION_RENAMES = {
    "q_proj": "to_q",
    "k_proj": "to_k",
    "v_proj": "to_v",
    "o_proj": "to_out.0",
    "q_norm": "norm_q",
    "k_norm": "norm_k",
}
_ATTENTION_KEY = re.compile(r"^(layers\.\d+\.(?:self_attn|cross_attn)\.)(q_proj|k_proj|v_proj|o_proj|q_norm|k_norm)\.")


def diffusers_name(name: str) -> str:
    """acetui parameter name (checkpoint key without ``decoder.``) -> diffusers state-dict key."""
    name = name.replace("proj_in.1.", "proj_in_conv.").replace("proj_out.1.", "proj_out_conv.")
    return _ATTENTION_KEY.sub(lambda m: m.group(1) + _ATTENTION_RENAMES[m.group(2)] + ".", name)


def load_reference(folder: Path, dtype: torch.dtype = torch.float32) -> AceStepTransformer1DModel:
    config = DecoderConfig.from_json_file(folder / "config.json")
    model = AceStepTransformer1DModel(
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        head_dim=config.head_dim,
        in_channels=config.in_channels,
        audio_acoustic_hidden_dim=config.audio_acoustic_hidden_dim,
        patch_size=config.patch_size,
        rope_theta=config.rope_theta,
        rms_norm_eps=config.rms_norm_eps,
        sliding_window=config.sliding_window,
        layer_types=list(config.layer_types),
        encoder_hidden_size=config.encoder_hidden_size,
    )
    entries, _ = decoder_entries(folder)
    state = {diffusers_name(name): tensor for name, tensor in iter_decoder_tensors(entries, torch.device("cpu"), dtype)}
    model.load_state_dict(state, strict=True)
    return model.to(dtype).eval()


def reference_projection_grads(model: AceStepTransformer1DModel) -> dict[str, torch.Tensor]:
    """Gradients of the attention projections keyed by acetui names."""
    inverse = {v: k for k, v in _ATTENTION_RENAMES.items()}
    grads = {}
    for name, parameter in model.named_parameters():
        match = re.match(r"^(layers\.\d+\.(?:self_attn|cross_attn)\.)(to_q|to_k|to_v|to_out\.0)\.weight$", name)
        if match and parameter.grad is not None:
            grads[f"{match.group(1)}{inverse[match.group(2)]}"] = parameter.grad
    return grads
