"""The ACE-Step 1.5 DiT decoder in plain PyTorch and the loading of official checkpoints."""

from acetui.model.catalog import VariantInfo, list_variants
from acetui.model.checkpoint import load_decoder
from acetui.model.config import DecoderConfig
from acetui.model.decoder import AceStepDecoder
from acetui.model.variants import resolve_variant

__all__ = [
    "AceStepDecoder",
    "DecoderConfig",
    "VariantInfo",
    "list_variants",
    "load_decoder",
    "resolve_variant",
]
