"""Training-time augmentation on batches (the OpenMIC recipe, docs/method.md).

- :func:`mixup`: one Beta(α, α) weight per sample; inputs, teacher
  embeddings and label vectors are mixed linearly with a partner: a clip
  drawn from the whole training split (``augment.mixup_partner:
  training_set``, the authors'; the data module serves it) or a shuffled
  copy of the batch (``batch``); the label mask is the union (a label is
  known when either source's is), as the authors did.
- :func:`spec_augment`: one frequency mask (width ≤ ``freq``) and one time
  mask (width ≤ ``time``) per sample, set to zero.
- :func:`jittered_ranges`: random mel-filterbank ranges, ``fmin ± fmin_jitter``
  and ``fmax ± fmax_jitter`` (each drawn on its own range: the authors' code
  tested the fmin setting for fmax), clipped to ``[0, Nyquist]``. With them the
  log-mel is computed per batch from cached waveforms, each clip through its
  own filterbank in one batched product (:class:`~eastmir.frontend.LogMelFrontend`).

Every function here treats the batch at once: a training step costs the same
number of operator calls at any batch size (a test counts them).

YAML::

    augment:
      mixup_alpha: 0.3
      mixup_partner: training_set   # or batch
      spec_augment: {freq: 48, time: 192}
      fmin_jitter: 20        # Hz
      fmax_jitter: 2000      # Hz
"""

from __future__ import annotations

import torch


def mixup(
    batch: dict[str, torch.Tensor],
    alpha: float,
    generator: torch.Generator | None = None,
    fold: bool = False,
    partner: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Mix every float tensor of ``batch`` with its partner's: ``partner`` (a batch of the same shapes, one
    partner per clip), else a permutation of ``batch`` itself; ``mask`` → union; other entries (integer
    tensors, the list of clip ids) are ``batch``'s, unchanged. ``fold``: each weight λ replaced by
    max(λ, 1 − λ), so every clip stays the larger part of its mix (the authors')."""
    n = batch["targets"].shape[0]
    device = batch["targets"].device
    beta = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)))
    lam = beta.sample((n,)).to(device)
    if fold:
        lam = torch.maximum(lam, 1 - lam)
    if partner is None:
        perm = torch.randperm(n, device=device, generator=generator)
        partner = {k: v[perm] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    out = {}
    for key, value in batch.items():
        if key == "mask":
            out[key] = value | partner[key]
        elif isinstance(value, torch.Tensor) and value.is_floating_point():
            shape = (n,) + (1,) * (value.ndim - 1)
            out[key] = torch.lerp(partner[key], value, lam.view(shape).to(value.dtype))  # w·x + (1 − w)·partner
        else:
            out[key] = value
    return out


def spec_augment(logmel: torch.Tensor, freq: int, time: int, inplace: bool = False, fill: float = 0.0) -> torch.Tensor:
    """``logmel (batch, mels, frames)`` with one frequency and one time mask per sample, set to ``fill`` (the
    authors mask before normalising, at log 0: ``fill = shift / scale`` of the normalised log-mel).

    A copy of the batch unless ``inplace``. Widths are uniform in ``[0, size]`` and starts uniform over the
    places a band of that width fits, drawn for the whole batch at once on its device; both masks are applied
    in one masked fill (no loop over the clips: the same few operations at any batch size).
    """
    n, mels, frames = logmel.shape
    device = logmel.device
    out = logmel if inplace else logmel.clone()
    bands = []
    for size, length in ((freq, mels), (time, frames)):
        if size <= 0:
            bands.append(None)
            continue
        width = torch.randint(0, min(size, length) + 1, (n,), device=device)
        start = (torch.rand(n, device=device) * (length - width + 1)).long()
        idx = torch.arange(length, device=device)
        bands.append((idx >= start[:, None]) & (idx < (start + width)[:, None]))  # (batch, length)
    rows, columns = bands
    if rows is None and columns is None:
        return out
    if rows is None:
        hit = columns[:, None, :]
    elif columns is None:
        hit = rows[:, :, None]
    else:
        hit = rows[:, :, None] | columns[:, None, :]  # (batch, mels, frames)
    return out.masked_fill_(hit, fill)


def jittered_ranges(
    n: int,
    fmin: float,
    fmax: float,
    fmin_jitter: float,
    fmax_jitter: float,
    nyquist: float,
    generator: torch.Generator | None = None,
    inward: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random ranges ``(fmin (n,), fmax (n,))`` in Hz, float64 on the CPU, drawn at once: each end moved
    uniformly within its own ± range, kept in ``[0, nyquist]``; ``inward`` (the authors'): fmin only up by a
    whole number of Hz below ``fmin_jitter``, fmax only down by one below ``fmax_jitter``."""
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    if inward:
        lo = fmin + torch.floor(u[:, 0] * fmin_jitter)
        hi = fmax - torch.floor(u[:, 1] * fmax_jitter)
    else:
        lo = fmin + (2 * u[:, 0] - 1) * fmin_jitter
        hi = fmax + (2 * u[:, 1] - 1) * fmax_jitter
    lo = lo.clamp(0.0, nyquist)
    hi = torch.maximum(hi, lo + 1.0).clamp(max=nyquist)
    return lo, hi
