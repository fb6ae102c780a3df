"""Reading one preprocessed ``.pt`` sample and checking it before any model time is spent on it.

A ``.pt`` file is a pickle, so it is only ever opened with ``weights_only=True``: a file that needs
anything beyond tensors and plain Python values is refused, never loaded. Every other defect a
preprocessing run can leave behind (truncation, pass-1 intermediates, NaN from a failed VAE encode,
tensors made for another model) is reported as one line naming the file, so a scan can list them all.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from acetui.errors import DatasetError

LATENT_FRAMES_PER_SECOND = 25
_REQUIRED = ("target_latents", "context_latents", "encoder_hidden_states")
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
_CORRUPT = "not a valid torch file (corrupt, truncated or not written by torch.save)"


class SampleFileError(DatasetError):
    """A sample file that cannot be used; keeps the bare reason so a scan can list it without the path."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, eq=False)
class Sample:
    """One validated sample: float32, contiguous, on the CPU, without a batch axis."""

    path: Path
    target_latents: torch.Tensor  # [T, 64]
    context_latents: torch.Tensor  # [T, C]: source latents ‖ chunk mask
    encoder_hidden_states: torch.Tensor  # [L, E]
    attention_mask: torch.Tensor  # [T]
    encoder_attention_mask: torch.Tensor  # [L]

    @property
    def frames(self) -> int:
        """Latent frames T (25 per second of audio)."""
        return self.target_latents.shape[0]

    @property
    def condition_length(self) -> int:
        """Length L of the packed condition sequence."""
        return self.encoder_hidden_states.shape[0]


def load_sample(
    path: Path,
    *,
    condition_width: int | None = None,
    context_channels: int = 128,
    latent_channels: int = 64,
) -> Sample:
    """Load and check one sample; raise SampleFileError (a DatasetError) saying what is wrong with it."""
    if path.name.endswith(".tmp.pt"):
        raise SampleFileError(path, "pass-1 intermediate, not a sample (left by an interrupted preprocessing run)")
    data = _read(path)
    if not isinstance(data, dict):
        raise SampleFileError(path, f"expected a dict of tensors, found {type(data).__name__}")
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        names = ", ".join(map(repr, missing))
        raise SampleFileError(path, f"missing key{'s' if len(missing) > 1 else ''} {names}")
    checker = _Checker(path, data)
    target = checker.matrix("target_latents", "T", latent_channels)
    context = checker.matrix("context_latents", "T", context_channels)
    condition = checker.matrix("encoder_hidden_states", "L", condition_width)
    frames, length = target.shape[0], condition.shape[0]
    if context.shape[0] != frames:
        raise SampleFileError(
            path, f"'context_latents' has {context.shape[0]} frames but 'target_latents' has {frames}"
        )
    if frames == 0:
        raise SampleFileError(path, "zero-length sample ('target_latents' has 0 frames)")
    if length == 0:
        raise SampleFileError(path, "empty condition ('encoder_hidden_states' has length 0)")
    return Sample(
        path=path,
        target_latents=_as_float32(target),
        context_latents=_as_float32(context),
        encoder_hidden_states=_as_float32(condition),
        attention_mask=_as_float32(checker.mask("attention_mask", frames, "'target_latents' frames")),
        encoder_attention_mask=_as_float32(
            checker.mask("encoder_attention_mask", length, "'encoder_hidden_states' length")
        ),
    )


def _read(path: Path) -> object:
    """``torch.load`` with weights_only, turning every failure into a reason a user can act on."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SampleFileError(path, "file not found") from None
    except IsADirectoryError:
        raise SampleFileError(path, "is a folder, not a file") from None
    except PermissionError:
        raise SampleFileError(path, "cannot read (permission denied)") from None
    except pickle.UnpicklingError as error:
        refused = _UNSUPPORTED_GLOBAL.search(str(error))
        if refused:
            raise SampleFileError(
                path,
                f"holds code or objects that are not plain tensors ({_printable(refused.group(1))}); "
                "not loaded, because unpickling it could run arbitrary code",
            ) from None
        raise SampleFileError(path, _CORRUPT) from None
    except Exception:  # whatever the parser trips on, the file is unusable
        raise SampleFileError(path, _CORRUPT) from None


def _printable(text: str, limit: int = 80) -> str:
    """A name taken from a damaged file, made safe for a one-line terminal message."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


class _Checker:
    """Shape, dtype and value checks on the tensors of one loaded dict, with errors naming file and key."""

    def __init__(self, path: Path, data: dict) -> None:
        self.path = path
        self.data = data

    def _tensor(self, key: str, rank: int, shape: str) -> torch.Tensor:
        value = self.data[key]
        if not isinstance(value, torch.Tensor):
            raise SampleFileError(self.path, f"{key!r} should be a tensor, found {type(value).__name__}")
        if value.dim() != rank:
            raise SampleFileError(self.path, f"{key!r} should be {shape}, found shape {list(value.shape)}")
        return value

    def matrix(self, key: str, rows: str, width: int | None) -> torch.Tensor:
        """A required [rows, width] floating tensor with finite values."""
        value = self._tensor(key, 2, f"[{rows}, {width or 'E'}]")
        if not value.is_floating_point():
            raise SampleFileError(self.path, f"{key!r} should be floating point, found {value.dtype}")
        if width is not None and value.shape[1] != width:
            raise SampleFileError(
                self.path, f"{key!r} has {value.shape[1]} channels, expected {width} (made for another model?)"
            )
        bad = value.numel() - int(torch.isfinite(value).sum())
        if bad:
            raise SampleFileError(self.path, f"{key!r} contains {bad} NaN/Inf values (failed encode?)")
        return value

    def mask(self, key: str, length: int, against: str) -> torch.Tensor:
        """An optional [length] mask of any dtype; all ones when the file has none."""
        if key not in self.data:
            return torch.ones(length)
        value = self._tensor(key, 1, f"[{length}]")
        if value.shape[0] != length:
            raise SampleFileError(self.path, f"{key!r} has length {value.shape[0]} but {against} is {length}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise SampleFileError(self.path, f"{key!r} contains NaN/Inf values")
        return value


def _as_float32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(torch.float32).contiguous()
