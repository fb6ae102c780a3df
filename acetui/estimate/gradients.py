"""Per-module gradient norms taken on the device the moment each gradient exists.

Only the scored projection weights require grad. A post-accumulate-grad hook writes the Frobenius
norm of each weight's gradient straight into its slot of a preallocated device buffer (one kernel)
and frees the gradient at once, so at no point is the full set of gradients held, and nothing syncs
with the host until the caller reads the buffer once per batch.
"""

from __future__ import annotations

import torch

from acetui.model import AceStepDecoder


class GradientProbe:
    """Collects ||dL/dW|| for each scored module over one backward pass."""

    def __init__(self, decoder: AceStepDecoder, module_names: list[str]) -> None:
        modules = dict(decoder.named_modules())
        self.names = module_names
        self.weights = [modules[name].weight for name in module_names]
        device = self.weights[0].device
        self.norms = torch.zeros(len(module_names), dtype=torch.float32, device=device)
        self._handles = []
        decoder.requires_grad_(False)
        for index, weight in enumerate(self.weights):
            weight.requires_grad_(True)
            self._handles.append(weight.register_post_accumulate_grad_hook(self._hook(index)))

    def _hook(self, index: int):
        def record(weight: torch.Tensor) -> None:
            torch.linalg.vector_norm(weight.grad, dtype=torch.float32, out=self.norms[index])
            weight.grad = None

        return record

    def reset(self) -> None:
        self.norms.zero_()

    @property
    def numels(self) -> list[int]:
        return [weight.numel() for weight in self.weights]

    def weight_norms(self) -> list[float]:
        """Frobenius norms of the pretrained weights (for the relative score); read once per run."""
        norms = torch.stack([torch.linalg.vector_norm(w.detach(), dtype=torch.float32) for w in self.weights])
        return norms.cpu().tolist()

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for weight in self.weights:
            weight.requires_grad_(False)
            weight.grad = None
