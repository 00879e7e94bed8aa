"""Training-time augmentation on batches (REFERENCE.md §3, OpenMIC recipe).

- :func:`mixup`: one Beta(α, α) weight per sample; inputs, teacher
  embeddings and label vectors are mixed linearly with a shuffled copy of
  the batch; the label mask is the union (a label is known when either
  source's is), as the authors did.
- :func:`spec_augment`: one frequency mask (width ≤ ``freq``) and one time
  mask (width ≤ ``time``) per sample, set to zero.

YAML::

    augment:
      mixup_alpha: 0.3
      spec_augment: {freq: 48, time: 192}
"""

from __future__ import annotations

import torch


def mixup(batch: dict[str, torch.Tensor], alpha: float, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Mix every float entry of ``batch`` with a permutation of itself; ``mask`` → union."""
    n = batch["targets"].shape[0]
    device = batch["targets"].device
    beta = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)))
    lam = beta.sample((n,)).to(device)
    perm = torch.randperm(n, device=device, generator=generator)
    out = {}
    for key, value in batch.items():
        if key == "mask":
            out[key] = value | value[perm]
        elif value.is_floating_point():
            shape = (n,) + (1,) * (value.ndim - 1)
            w = lam.view(shape).to(value.dtype)
            out[key] = w * value + (1 - w) * value[perm]
        else:
            out[key] = value
    return out


def spec_augment(logmel: torch.Tensor, freq: int, time: int) -> torch.Tensor:
    """``logmel (batch, mels, frames)`` with one frequency and one time mask per sample."""
    n, mels, frames = logmel.shape
    device = logmel.device
    out = logmel.clone()
    for size, length, axis in ((freq, mels, 1), (time, frames, 2)):
        if size <= 0:
            continue
        width = torch.randint(0, min(size, length) + 1, (n,), device=device)
        start = (torch.rand(n, device=device) * (length - width + 1)).long()
        idx = torch.arange(length, device=device)
        hit = (idx[None] >= start[:, None]) & (idx[None] < (start + width)[:, None])  # (n, length)
        hit = hit[:, :, None] if axis == 1 else hit[:, None, :]
        out = out.masked_fill(hit, 0.0)
    return out
