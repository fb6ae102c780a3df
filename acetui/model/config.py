"""The decoder's configuration, read from a variant folder's ``config.json``.

Only the fields the decoder and the training objective use are kept; unknown fields are ignored, as
the official loader does. Every problem is reported with the file and the field it concerns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acetui.errors import ModelLoadError
from acetui.jsonfile import read_json

SLIDING = "sliding_attention"
FULL = "full_attention"


@dataclass(frozen=True)
class DecoderConfig:
    """Geometry of the ACE-Step 1.5 DiT decoder plus the timestep-sampling parameters of its objective."""

    hidden_size: int = 2048
    intermediate_size: int = 6144
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    num_key_value_heads: int = 8
    head_dim: int = 128
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    attention_bias: bool = False
    use_sliding_window: bool = True
    sliding_window: int | None = 128
    layer_types: tuple[str, ...] = field(default_factory=tuple)
    in_channels: int = 192
    patch_size: int = 2
    audio_acoustic_hidden_dim: int = 64
    encoder_hidden_size: int | None = None
    hidden_act: str = "silu"
    timestep_mu: float = -0.4
    timestep_sigma: float = 1.0

    def __post_init__(self) -> None:
        if not self.layer_types:
            alternating = tuple(SLIDING if i % 2 == 0 else FULL for i in range(self.num_hidden_layers))
            object.__setattr__(self, "layer_types", alternating)

    @property
    def condition_width(self) -> int:
        """Width E of ``encoder_hidden_states``; absent or null in 2B configs means ``hidden_size``."""
        return self.encoder_hidden_size or self.hidden_size

    @property
    def context_channels(self) -> int:
        """Channels of ``context_latents`` (source latents and chunk mask): the patchify input minus x_t."""
        return self.in_channels - self.audio_acoustic_hidden_dim

    def window_for_layer(self, index: int) -> int | None:
        """Half-width of the banded self-attention mask of a layer, or None for full attention."""
        if not self.use_sliding_window or self.sliding_window is None:
            return None
        return self.sliding_window if self.layer_types[index] == SLIDING else None

    @classmethod
    def from_json_file(cls, path: Path) -> DecoderConfig:
        """Read ``config.json``; raise ModelLoadError naming the file and field on any problem."""
        raw = read_json(path, ModelLoadError)
        if not isinstance(raw, dict):
            raise ModelLoadError(f"{path}: expected a JSON object, found {type(raw).__name__}")
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> DecoderConfig:
        """Build from a parsed config, checking the type of every field the decoder needs."""
        reader = _FieldReader(raw, source)
        config = cls(
            hidden_size=reader.integer("hidden_size"),
            intermediate_size=reader.integer("intermediate_size"),
            num_hidden_layers=reader.integer("num_hidden_layers"),
            num_attention_heads=reader.integer("num_attention_heads"),
            num_key_value_heads=reader.integer("num_key_value_heads", cls.num_key_value_heads),
            head_dim=reader.optional_integer("head_dim")
            or reader.integer("hidden_size") // reader.integer("num_attention_heads"),
            rms_norm_eps=reader.number("rms_norm_eps", cls.rms_norm_eps, positive=True),
            rope_theta=reader.number("rope_theta", cls.rope_theta, positive=True),
            attention_bias=reader.boolean("attention_bias", cls.attention_bias),
            use_sliding_window=reader.boolean("use_sliding_window", cls.use_sliding_window),
            sliding_window=reader.optional_integer("sliding_window", cls.sliding_window),
            layer_types=reader.layer_types(),
            in_channels=reader.integer("in_channels", cls.in_channels),
            patch_size=reader.integer("patch_size", cls.patch_size),
            audio_acoustic_hidden_dim=reader.integer("audio_acoustic_hidden_dim", cls.audio_acoustic_hidden_dim),
            encoder_hidden_size=reader.optional_integer("encoder_hidden_size"),
            hidden_act=reader.text("hidden_act", cls.hidden_act),
            timestep_mu=reader.number("timestep_mu", cls.timestep_mu),
            timestep_sigma=reader.number("timestep_sigma", cls.timestep_sigma, positive=True),
        )
        config.validate(source)
        return config

    def validate(self, source: str) -> None:
        """Reject geometries the decoder cannot be built with."""
        if self.hidden_act != "silu":
            raise ModelLoadError(f"{source}: hidden_act {self.hidden_act!r} is not supported (only 'silu')")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ModelLoadError(
                f"{source}: num_attention_heads ({self.num_attention_heads}) is not a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim % 2:
            raise ModelLoadError(f"{source}: head_dim ({self.head_dim}) must be even for RoPE")
        if len(self.layer_types) != self.num_hidden_layers:
            raise ModelLoadError(
                f"{source}: layer_types has {len(self.layer_types)} entries but num_hidden_layers is "
                f"{self.num_hidden_layers}"
            )
        if self.context_channels <= 0:
            raise ModelLoadError(
                f"{source}: in_channels ({self.in_channels}) must exceed audio_acoustic_hidden_dim "
                f"({self.audio_acoustic_hidden_dim})"
            )

    def to_dict(self) -> dict[str, Any]:
        """The fields in config.json spelling, for writing synthetic checkpoints."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values["layer_types"] = list(self.layer_types)
        return values


_MISSING = object()


class _FieldReader:
    """Typed access to config fields with errors that name the file and the field."""

    def __init__(self, raw: dict[str, Any], source: str) -> None:
        self.raw = raw
        self.source = source

    def _get(self, name: str, default: Any) -> Any:
        value = self.raw.get(name, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise ModelLoadError(f"{self.source}: missing field {name!r}")
            return default
        return value

    def _wrong(self, name: str, expected: str, value: Any) -> ModelLoadError:
        return ModelLoadError(f"{self.source}: field {name!r} should be {expected}, found {value!r}")

    def integer(self, name: str, default: Any = _MISSING) -> int:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self._wrong(name, "a positive integer", value)
        return value

    def optional_integer(self, name: str, default: int | None = None) -> int | None:
        """Absent -> ``default``; ``null`` -> None (the field is explicitly unset); else a positive integer."""
        if name not in self.raw:
            return default
        if self.raw[name] is None:
            return None
        return self.integer(name)

    def number(self, name: str, default: Any = _MISSING, *, positive: bool = False) -> float:
        """A finite number (Python's JSON reader accepts NaN and Infinity), above zero with ``positive``: a norm's
        epsilon, RoPE's base or the timestep spread that is not would make every loss NaN."""
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self._wrong(name, "a finite number", value)
        if positive and value <= 0:
            raise self._wrong(name, "a number above zero", value)
        return float(value)

    def boolean(self, name: str, default: Any = _MISSING) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self._wrong(name, "true or false", value)
        return value

    def text(self, name: str, default: Any = _MISSING) -> str:
        value = self._get(name, default)
        if not isinstance(value, str):
            raise self._wrong(name, "a string", value)
        return value

    def layer_types(self) -> tuple[str, ...]:
        value = self._get("layer_types", None)
        if value is None:
            return ()
        if not isinstance(value, list) or any(item not in (SLIDING, FULL) for item in value):
            raise self._wrong("layer_types", f"a list of {SLIDING!r}/{FULL!r}", value)
        return tuple(value)
