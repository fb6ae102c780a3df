"""Reading one preprocessed ``.pt`` sample and checking it before any model time is spent on it.

A ``.pt`` file is a pickle, so it is only ever opened with ``weights_only=True``: a file that needs
anything beyond tensors and plain Python values is refused, never loaded. Every other defect a
preprocessing run can leave behind (truncation, pass-1 intermediates, NaN from a failed VAE encode,
tensors made for another model) is reported as one line naming the file, so a scan can list them all.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from acetui.data.files import regular_file
from acetui.errors import DatasetError, printable

LATENT_FRAMES_PER_SECOND = 25
LATENT_CHANNELS = 64  # the VAE's, the same for every variant
_REQUIRED = ("target_latents", "context_latents", "encoder_hidden_states")
# torch names the refused global as "Unsupported global: GLOBAL x.y" (an unknown class) or "unsupported
# GLOBAL posix.system whose module posix is blocked" (a function that would run code)
_UNSUPPORTED_GLOBAL = re.compile(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)")
_NESTED_JAGGED = "nested jagged tensors"  # in torch's refusal of a file holding one
_CORRUPT = "not a valid torch file (corrupt, truncated or not written by torch.save)"
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_INTEGERS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32, torch.uint64)
_MASK_DTYPES = (torch.bool, *_INTEGERS, *_FLOATS)
_SPARSE_LAYOUTS = (torch.sparse_coo, torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc)


class SampleFileError(DatasetError):
    """A sample file that cannot be used; keeps the bare reason so a scan can list it without the path."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{printable(str(path))}: {reason}")
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
    size_bytes: int  # of the file, from the stat that checked it (a scan lists it)

    @property
    def frames(self) -> int:
        """Latent frames T (25 per second of audio)."""
        return self.target_latents.shape[0]

    @property
    def condition_length(self) -> int:
        """Length L of the packed condition sequence."""
        return self.encoder_hidden_states.shape[0]

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        """Every tensor the model reads, in field order."""
        return (
            self.target_latents,
            self.context_latents,
            self.encoder_hidden_states,
            self.attention_mask,
            self.encoder_attention_mask,
        )


@dataclass(frozen=True)
class SampleInfo:
    """The sizes of one valid sample and a digest of its values; the tensors themselves are not kept."""

    path: Path
    frames: int
    condition_length: int
    condition_width: int
    size_bytes: int
    content: str  # a digest of the values as loaded (``scan._content_digest``), which a resume checks

    @property
    def seconds(self) -> float:
        """Audio duration, derived from the latent frames (``metadata.duration`` is often 0)."""
        return self.frames / LATENT_FRAMES_PER_SECOND


def load_sample(
    path: Path,
    *,
    condition_width: int | None = None,
    context_channels: int = 128,
    status: os.stat_result | None = None,
) -> Sample:
    """Load and check one sample; raise SampleFileError (a DatasetError) saying what is wrong with it.
    ``status`` is the file's ``regular_file`` stat when the caller has taken it (a file is looked at once)."""
    if path.name.endswith(".tmp.pt"):
        raise SampleFileError(path, "pass-1 intermediate, not a sample (left by an interrupted preprocessing run)")
    data, size = _read(path, status)
    if not isinstance(data, dict):
        raise SampleFileError(path, f"expected a dict of tensors, found {type(data).__name__}")
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        names = ", ".join(map(repr, missing))
        raise SampleFileError(path, f"missing key{'s' if len(missing) > 1 else ''} {names}")
    checker = _Checker(path, data)
    target = checker.matrix("target_latents", "T", LATENT_CHANNELS)
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
        size_bytes=size,
    )


def _read(path: Path, status: os.stat_result | None) -> tuple[object, int]:
    """``torch.load`` with weights_only, and the file's size, turning every failure into a reason a user can
    act on. Anything but a regular file is refused before it is opened (opening a named pipe would block)."""
    found = regular_file(path) if status is None else status
    if isinstance(found, str):
        raise SampleFileError(path, found)
    try:
        # torch warns on stderr about what it meets in odd files (a plain pickle's protocol, sparse or
        # quantized tensors); each such file gets our own one-line reason instead
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True), found.st_size
    except FileNotFoundError:
        raise SampleFileError(path, "file not found") from None
    except PermissionError:
        raise SampleFileError(path, "cannot read (permission denied)") from None
    except pickle.UnpicklingError as error:
        refused = _UNSUPPORTED_GLOBAL.search(str(error))
        if refused:
            raise SampleFileError(
                path,
                f"holds code or objects that are not plain tensors ({printable(refused.group(1), 80)}); "
                "not loaded, because unpickling it could run arbitrary code",
            ) from None
        if _NESTED_JAGGED in str(error):
            raise SampleFileError(path, "holds a nested (jagged) tensor; expected dense tensors") from None
        raise SampleFileError(path, _CORRUPT) from None
    except Exception:  # whatever the parser trips on, the file is unusable
        raise SampleFileError(path, _CORRUPT) from None


class _Checker:
    """Shape, dtype and value checks on the tensors of one loaded dict, with errors naming file and key."""

    def __init__(self, path: Path, data: dict) -> None:
        self.path = path
        self.data = data

    def _tensor(self, key: str, rank: int, shape: str) -> torch.Tensor:
        value = self.data[key]
        if not isinstance(value, torch.Tensor):
            raise SampleFileError(self.path, f"{key!r} should be a tensor, found {type(value).__name__}")
        unusual = _unusual_kind(value)
        if unusual:
            raise SampleFileError(self.path, f"{key!r} {unusual}")
        if value.dim() != rank:
            raise SampleFileError(self.path, f"{key!r} should be {shape}, found shape {list(value.shape)}")
        return value

    def matrix(self, key: str, rows: str, width: int | None) -> torch.Tensor:
        """A required [rows, width] floating tensor with finite values."""
        value = self._tensor(key, 2, f"[{rows}, {width or 'E'}]")
        if not value.is_floating_point():
            raise SampleFileError(self.path, f"{key!r} should be floating point, found {value.dtype}")
        if value.dtype not in _FLOATS:
            raise SampleFileError(
                self.path, f"{key!r} is {value.dtype}; expected float16, bfloat16, float32 or float64"
            )
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
        if value.dtype not in _MASK_DTYPES:
            raise SampleFileError(self.path, f"{key!r} is {value.dtype}; expected a bool, integer or float mask")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise SampleFileError(self.path, f"{key!r} contains NaN/Inf values")
        return value


def _unusual_kind(value: torch.Tensor) -> str | None:
    """Why ``value`` is not a plain strided tensor of real values with storage, or None. Such tensors
    (sparse, nested, meta, quantized, complex) load fine but then fail deep inside torch with messages
    that name neither the file nor the key."""
    if value.is_nested:
        return "is a nested tensor; expected a dense one"
    if value.layout in _SPARSE_LAYOUTS:
        return f"is a sparse tensor ({value.layout}); expected a dense one"
    if value.layout != torch.strided:
        return f"has layout {value.layout}; expected a dense (strided) tensor"
    if value.is_meta:
        return "is a meta tensor (a shape without values); expected one holding values"
    if value.is_quantized:
        return f"is a quantized tensor ({value.dtype}); expected plain values"
    if value.is_complex():
        return f"is complex ({value.dtype}); expected real values"
    return None


def _as_float32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(torch.float32).contiguous()
