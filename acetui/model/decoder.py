"""The ACE-Step 1.5 DiT decoder, written from the reference specification in plain PyTorch.

Module and parameter names follow the official checkpoint keys (without the leading ``decoder.``), so a
state dict read from ``model.safetensors`` loads unchanged and gradient names match the official tools.
The forward pass follows the official model step by step, including its quirks: padding masks are
accepted and ignored, the padded frame of an odd-length input is a real token, and cross-attention has
neither RoPE nor a gate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from acetui.model.config import DecoderConfig
from acetui.model.recompute import recomputed

ATTENTION_KINDS = ("self_attn", "cross_attn")
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
TIMESTEP_SCALE = 1000.0
TIMESTEP_CHANNELS = 256


class RMSNorm(nn.Module):
    """Root-mean-square norm with float32 statistics, cast back before the weight, as the official model.

    ``F.rms_norm`` computes exactly the official float32-statistics normalisation (and cast back) in one
    operator instead of seven, which matters on a GPU, where a batch is bound by kernel launches: there
    are seven norms per layer.
    """

    def __init__(self, width: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(x, self.weight)

    def normalize(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The norm with ``weight`` passed in, for recomputation where the weight is an explicit input."""
        return weight * F.rms_norm(x, x.shape[-1:], eps=self.eps)


class ProjectionsOfNorm(torch.autograd.Function):
    """Linear projections of ``hidden = prepare(*inputs)`` that keep ``inputs``, not ``hidden``, for backward.

    The attention projections read the (modulated) norm of the residual stream; autograd would keep
    that D-wide input for their weight gradients next to the residual stream, which the norm keeps
    anyway. Rebuilding it in the backward pass costs a few elementwise kernels and keeps one activation
    fewer per attention block. ``apply(hidden, prepare, input_count, *inputs, *weights_and_biases)``:
    ``hidden`` gets its gradient here and passes it on through its own graph; weights and biases
    alternate, a bias may be None. Returns one output per weight.
    """

    @staticmethod
    def forward(ctx, hidden, prepare, input_count: int, *tensors: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        ctx.prepare, ctx.input_count = prepare, input_count
        ctx.save_for_backward(*tensors)
        parameters = tensors[input_count:]
        return tuple(F.linear(hidden, weight, bias) for weight, bias in zip(parameters[0::2], parameters[1::2]))

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        count = ctx.input_count
        tensors, needs = ctx.saved_tensors, ctx.needs_input_grad
        with torch.no_grad():
            rows = ctx.prepare(*tensors[:count]).flatten(0, -2)
        weights, flats = tensors[count::2], [grad.flatten(0, -2) for grad in grads]
        parameter_grads: list[torch.Tensor | None] = []
        for index, flat in enumerate(flats):
            need_weight, need_bias = needs[3 + count + 2 * index], needs[4 + count + 2 * index]
            parameter_grads += [flat.T @ rows if need_weight else None, flat.sum(0) if need_bias else None]
        grad_hidden = None
        if needs[0]:  # the projections' input gradients, summed inside the matmuls
            grad_rows = flats[0] @ weights[0]
            for flat, weight in zip(flats[1:], weights[1:]):
                grad_rows.addmm_(flat, weight)
            grad_hidden = grad_rows.view(*grads[0].shape[:-1], rows.shape[-1])
        return (grad_hidden, None, None, *[None] * count, *parameter_grads)


class ChannelsFirst(nn.Module):
    """[B, T, C] <-> [B, C, T] around the patchify convolutions (index 0/2 of the official Sequential)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class TokensMajor(nn.Module):
    """[B, C, T] -> [B, T, C] stored token by token: the residual stream's layout in every layer.

    The official model keeps the convolution's transposed view, so every norm of the residual stream
    copies it into rows first (five copies per layer with the backward pass) and every elementwise
    kernel that mixes it with a projection's output reads one operand across strides.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).contiguous()


def sinusoidal_embedding(timestep: torch.Tensor, channels: int = TIMESTEP_CHANNELS) -> torch.Tensor:
    """Cosines first, then sines, of t*1000 at frequencies exp(-ln(1e4) k / (channels/2)), in float32."""
    half = channels // 2
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=timestep.device) / half)
    angles = (timestep * TIMESTEP_SCALE).float()[:, None] * frequencies[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1).to(timestep.dtype)


class TimestepEmbedding(nn.Module):
    """Sinusoid -> linear_1 -> SiLU -> linear_2 gives temb; SiLU -> time_proj gives six modulation rows."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(TIMESTEP_CHANNELS, width)
        self.linear_2 = nn.Linear(width, width)
        self.time_proj = nn.Linear(width, 6 * width)

    def forward(self, timestep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        temb = self.linear_2(F.silu(self.linear_1(sinusoidal_embedding(timestep))))
        modulation = self.time_proj(F.silu(temb)).unflatten(1, (6, -1))
        return temb, modulation


def rope_tables(length: int, config: DecoderConfig, device: torch.device, dtype: torch.dtype):
    """cos/sin [T', head_dim] for patch positions 0..T'-1, built in float32 ("half" layout).

    The sine's first half is negated so that the official ``x * cos + rotate_half(x) * sin`` becomes
    ``x * cos + x.roll(head_dim / 2) * sin``: rotate_half(x) is roll(x) with its first half negated, and
    moving that sign into the table gives the same rotation in three kernels instead of six.
    """
    exponents = torch.arange(0, config.head_dim, 2, dtype=torch.float32, device=device) / config.head_dim
    inverse_frequencies = 1.0 / (config.rope_theta**exponents)
    angles = torch.arange(length, dtype=torch.float32, device=device)[:, None] * inverse_frequencies[None]
    return torch.cat([angles, angles], dim=-1).cos().to(dtype), torch.cat([-angles, angles], dim=-1).sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), signed_sin)


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where ``allowed``, -inf elsewhere: what SDPA turns a boolean mask into on every call.

    Converting once per forward lets every sliding layer share one mask, where a boolean mask would be
    converted, and the float copy kept for the backward pass, by each layer separately.
    """
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))


def sliding_window_mask(length: int, window: int, device: torch.device) -> torch.Tensor:
    """Boolean [T', T'] band: query i sees key j iff |i - j| <= window (True = attend)."""
    positions = torch.arange(length, device=device)
    return (positions[:, None] - positions[None, :]).abs() <= window


class BandedAttention:
    """Sliding-window attention computed block by block instead of as a dense [T', T'] masked product.

    Queries are cut into blocks of ``2 * window``; each block attends to its own keys plus ``window`` on
    either side (a ``4 * window`` span), under the same |i - j| <= window band and with the padded keys
    masked out. Masked scores contribute exactly zero in the dense form too, so this is the same
    attention up to floating-point summation order, with O(T' * window) work and memory instead of
    O(T'^2). Built once per forward (for its batch size and dtype) and shared by every sliding layer.
    """

    def __init__(self, batch: int, length: int, window: int, device: torch.device, dtype: torch.dtype) -> None:
        self.length, self.window = length, window
        self.block = 2 * window
        self.blocks = math.ceil(length / self.block)
        self.padding = self.blocks * self.block - length
        rows = torch.arange(self.block, device=device)[:, None]
        columns = torch.arange(self.block + 2 * window, device=device)[None, :]
        band = (columns >= rows) & (columns <= rows + 2 * window)
        starts = torch.arange(self.blocks, device=device)[:, None, None] * self.block
        keys = starts - window + columns
        mask = band & (keys >= 0) & (keys < length)
        # Padded query rows (cropped from the output) keep their band so no row is fully masked.
        allowed = torch.where(starts + rows >= length, band, mask)[:, None]  # [blocks, 1, block, span]
        self.mask = additive_mask(allowed.repeat(batch, 1, 1, 1), dtype)  # [batch * blocks, 1, block, span]

    def __call__(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float, enable_gqa: bool
    ) -> torch.Tensor:
        batch, heads, _, width = query.shape
        blocks, block, window = self.blocks, self.block, self.window
        # Token-major blocks: the output comes back in this layout, so un-blocking it is a view.
        query = F.pad(query.transpose(1, 2), (0, 0, 0, 0, 0, self.padding))
        query = query.reshape(batch * blocks, block, heads, width).transpose(1, 2)

        def spans(x: torch.Tensor) -> torch.Tensor:
            x = F.pad(x, (0, 0, window, self.padding + window)).unfold(2, block + 2 * window, block)
            return x.permute(0, 2, 1, 4, 3).reshape(batch * blocks, x.shape[1], block + 2 * window, width)

        attended = F.scaled_dot_product_attention(
            query, spans(key), spans(value), attn_mask=self.mask, scale=scale, enable_gqa=enable_gqa
        )
        attended = attended.transpose(1, 2).reshape(batch, blocks * block, heads, width)
        return attended[:, : self.length].transpose(1, 2)


def sliding_window_attention(x: torch.Tensor, window: int, blocked: bool = True):
    """The sliding layers' mask for activations like ``x`` ([B, T', D]): banded blocks where they pay
    off, else the dense additive band.

    Blocks compute T' x 4 windows of scores against the dense T' x T', so on the CPU, where the scores
    are the cost, they win from 4 windows on (2 % of a mid-sized batch at 6 windows); on a GPU a short
    batch is bound by kernel launches, which the blocking adds, so it starts at 8 windows there.
    """
    batch, length = x.shape[:2]
    if blocked and length >= (4 if x.device.type == "cpu" else 8) * window:
        return BandedAttention(batch, length, window, x.device, x.dtype)
    return additive_mask(sliding_window_mask(length, window, x.device), x.dtype)


class Attention(nn.Module):
    """Grouped-query attention with per-head q/k RMSNorm; used for self- and cross-attention."""

    def __init__(self, config: DecoderConfig, key_value_width: int) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.key_value_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, self.heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(key_value_width, self.key_value_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(key_value_width, self.key_value_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.heads * self.head_dim, config.hidden_size, bias=bias)
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)

    def _heads(self, x: torch.Tensor, count: int) -> torch.Tensor:
        """[B, T', count * head_dim] -> [B, T', count, head_dim]; callers transpose after the norm.

        Norming before the transpose keeps the heads token-major in memory, and attention kernels write
        their output in the query's layout, so merging the heads for ``o_proj`` is a view, not a copy that
        every layer would keep for the backward pass (the CPU norm makes a transposed input contiguous).
        """
        return x.unflatten(-1, (count, self.head_dim))

    def forward(
        self,
        source: tuple[torch.Tensor, ...],
        prepare: Callable[..., torch.Tensor],
        condition: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | BandedAttention | None = None,
    ) -> torch.Tensor:
        """Attention over ``prepare(*source)`` (the residual stream normed, with the norm weight and any
        modulation in ``source``); keys and values from the same input, or from ``condition``."""
        query, key, value = self.project(source, prepare, condition)
        query = self.q_norm(self._heads(query, self.heads)).transpose(1, 2)
        key = self.k_norm(self._heads(key, self.key_value_heads)).transpose(1, 2)
        value = self._heads(value, self.key_value_heads).transpose(1, 2)
        if rope is not None:
            query, key = apply_rope(query, *rope), apply_rope(key, *rope)
        return self.o_proj(self.attend(query, key, value, mask).transpose(1, 2).flatten(2))

    def project(
        self, source: tuple[torch.Tensor, ...], prepare: Callable[..., torch.Tensor], condition: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw q, k, v. What the official model computes as q_proj(h), k_proj(h or condition), ...
        with h = prepare(*source), without keeping h for the backward pass (see ProjectionsOfNorm)."""
        own = (self.q_proj,) if condition is not None else (self.q_proj, self.k_proj, self.v_proj)
        parameters = [tensor for projection in own for tensor in (projection.weight, projection.bias)]
        outputs = ProjectionsOfNorm.apply(prepare(*source), prepare, len(source), *source, *parameters)
        if condition is None:
            return outputs
        return outputs[0], self.k_proj(condition), self.v_proj(condition)

    def attend(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | BandedAttention | None,
    ) -> torch.Tensor:
        """SDPA over [B, heads, T', head_dim], each key/value head serving ``heads / kv_heads`` queries.

        The CPU's flash kernel shares key/value heads itself, so no repeated copies are kept for the
        backward pass; on CUDA, enable_gqa sends fp32 (and masked) attention to the unfused math kernel,
        whose [T', T'] scores cost far more memory than repeating the heads.
        """
        native_groups = query.device.type == "cpu"
        group = self.heads // self.key_value_heads
        if group > 1 and not native_groups:
            key, value = key.repeat_interleave(group, dim=1), value.repeat_interleave(group, dim=1)
        scale = self.head_dim**-0.5
        if isinstance(mask, BandedAttention):
            return mask(query, key, value, scale, native_groups)
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scale, enable_gqa=native_groups)


class GatedSiLU(torch.autograd.Function):
    """silu(gate) * up, keeping only gate and up for the backward pass.

    Autograd would also keep silu(gate), the size of the MLP's widest activation; recomputing it in the
    backward pass is one cheap elementwise kernel, and the gradients use the same kernels as autograd's.
    """

    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        gate, up = ctx.saved_tensors
        grad_gate = torch.ops.aten.silu_backward(grad * up, gate) if ctx.needs_input_grad[0] else None
        grad_up = grad * F.silu(gate) if ctx.needs_input_grad[1] else None
        return grad_gate, grad_up


class SwiGLU(nn.Module):
    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(GatedSiLU.apply(self.gate_proj(x), self.up_proj(x)))


class DecoderLayer(nn.Module):
    """AdaLN self-attention (gated), plain cross-attention (ungated), AdaLN SwiGLU MLP (gated)."""

    def __init__(self, config: DecoderConfig, index: int) -> None:
        super().__init__()
        self.window = config.window_for_layer(index)
        self.self_attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, config.hidden_size)
        self.cross_attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.cross_attn = Attention(config, config.hidden_size)
        self.mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config)
        self.scale_shift_table = nn.Parameter(torch.zeros(1, 6, config.hidden_size))

    def forward(
        self,
        x: torch.Tensor,
        modulation: torch.Tensor,
        condition: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        sliding_mask: torch.Tensor | BandedAttention | None,
    ) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = (self.scale_shift_table + modulation).chunk(6, dim=1)
        mask = sliding_mask if self.window is not None else None
        source = (x, self.self_attn_norm.weight, shift_a, 1 + scale_a)  # 1 + scale once, not per rebuild
        x = torch.addcmul(x, self.self_attn(source, self._modulated_norm, rope=rope, mask=mask), gate_a)
        x = x + self.cross_attn((x, self.cross_attn_norm.weight), self.cross_attn_norm.normalize, condition)
        mlp_input = torch.addcmul(shift_m, self.mlp_norm(x), 1 + scale_m)
        return torch.addcmul(x, self.mlp(mlp_input), gate_m)

    def _modulated_norm(
        self, x: torch.Tensor, weight: torch.Tensor, shift: torch.Tensor, factor: torch.Tensor
    ) -> torch.Tensor:
        """AdaLN: the self-attention norm of x times 1 + scale (``factor``), shifted: the attention input."""
        return torch.addcmul(shift, self.self_attn_norm.normalize(x, weight), factor)


class AceStepDecoder(nn.Module):
    """The DiT that predicts the flow v = noise - x0 from x_t, t, r, condition states and context latents."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        width = config.hidden_size
        self.activation_checkpointing = False
        self.banded_attention = True  # False: the dense [T', T'] sliding mask, as the official SDPA path
        self.proj_in = nn.Sequential(
            ChannelsFirst(),
            nn.Conv1d(config.in_channels, width, config.patch_size, stride=config.patch_size),
            TokensMajor(),
        )
        self.time_embed = TimestepEmbedding(width)
        self.time_embed_r = TimestepEmbedding(width)
        self.condition_embedder = nn.Linear(config.condition_width, width)
        self.layers = nn.ModuleList(DecoderLayer(config, index) for index in range(config.num_hidden_layers))
        self.norm_out = RMSNorm(width, config.rms_norm_eps)
        self.proj_out = nn.Sequential(
            ChannelsFirst(),
            nn.ConvTranspose1d(width, config.audio_acoustic_hidden_dim, config.patch_size, stride=config.patch_size),
            ChannelsFirst(),
        )
        self.scale_shift_table = nn.Parameter(torch.zeros(1, 2, width))

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        timestep_r: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        context_latents: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted flow [B, T, 64].

        ``attention_mask`` and ``encoder_attention_mask`` are accepted and ignored, exactly as in the
        official decoder: padded frames and padded condition tokens take part in attention, and a model
        that honoured the masks would not reproduce the official loss or gradients.
        """
        temb_t, modulation_t = self.time_embed(timestep)
        temb_r, modulation_r = self.time_embed_r(timestep - timestep_r)
        temb, modulation = temb_t + temb_r, modulation_t + modulation_r

        frames = hidden_states.shape[1]
        x = torch.cat([context_latents, hidden_states], dim=-1)
        remainder = frames % self.config.patch_size
        if remainder:
            x = F.pad(x, (0, 0, 0, self.config.patch_size - remainder))
        x = self.proj_in(x)
        condition = self.condition_embedder(encoder_hidden_states)

        tokens = x.shape[1]
        rope = rope_tables(tokens, self.config, x.device, x.dtype)
        window = self.config.sliding_window if self.config.use_sliding_window else None
        needs_mask = window is not None and tokens > window + 1
        sliding_mask = None
        if needs_mask:
            sliding_mask = sliding_window_attention(x, window, self.banded_attention)
        for layer in self.layers:
            if self.activation_checkpointing and torch.is_grad_enabled():
                trained = [parameter for parameter in layer.parameters() if parameter.requires_grad]
                x = recomputed(partial(layer, rope=rope, sliding_mask=sliding_mask), trained, x, modulation, condition)
            else:
                x = layer(x, modulation, condition, rope, sliding_mask)

        shift, scale = (self.scale_shift_table + temb[:, None, :]).chunk(2, dim=1)
        x = self.norm_out(x) * (1 + scale) + shift
        return self.proj_out(x)[:, :frames]

    def attention_projection_names(self, include_mlp: bool = False) -> list[str]:
        """Names of the projection modules the estimator scores, in layer order."""
        names = [
            f"layers.{index}.{kind}.{projection}"
            for index in range(len(self.layers))
            for kind in ATTENTION_KINDS
            for projection in ATTENTION_PROJECTIONS
        ]
        if include_mlp:
            names += [f"layers.{i}.mlp.{p}" for i in range(len(self.layers)) for p in MLP_PROJECTIONS]
        return names
