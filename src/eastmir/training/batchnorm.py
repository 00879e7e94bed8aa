"""BatchNorm over the global batch when several processes train together (DDP).

On GPUs this is torch's ``nn.SyncBatchNorm``. torch refuses it on the CPU
(``SyncBatchNorm layers only work with GPU modules``), and CPU DDP over gloo
is how a laptop or CI checks that a multi-process run computes the
single-process step, so :class:`CrossProcessBatchNorm` does the same there:
each process's per-channel sums and sums of squares are added up across
processes with torch's differentiable ``all_reduce`` (gradients flow back
through the shared statistics), normalisation uses the global mean and
(biased) variance, the running statistics take the unbiased global variance,
as ``nn.BatchNorm`` does on one process. In eval mode, or with one process,
it is plain BatchNorm. It keeps BatchNorm's parameter and buffer names, so
checkpoints load into the plain student.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce


def _several_processes() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class CrossProcessBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm1d/2d with the statistics of all processes' batches; input ``(batch, channels, ...)``."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input of 2 or more dimensions, got {input.dim()}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _several_processes()):
            return super().forward(x)
        channels, dims = x.shape[1], [0, *range(2, x.dim())]
        wide = x.double()  # E[x²] − E[x]² in float64: no cancellation at float32 precision
        local = torch.cat([wide.sum(dims), (wide * wide).sum(dims), wide.new_tensor([x.numel() / channels])])
        total = all_reduce(local)  # summed over processes, differentiable
        n = total[-1]
        mean = total[:channels] / n
        var = (total[channels : 2 * channels] / n - mean * mean).clamp_min(0.0)
        shape = [1, channels] + [1] * (x.dim() - 2)
        y = (x - mean.to(x.dtype).view(shape)) * torch.rsqrt(var.to(x.dtype).view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(m * mean.to(x.dtype))
                self.running_var.mul_(1 - m).add_(m * (var * n / (n - 1).clamp_min(1)).to(x.dtype))
        return y


def synchronise_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """``module`` with every BatchNorm1d/2d computing its statistics over all processes (in place)."""
    if device_type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            replacement = CrossProcessBatchNorm(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            replacement.load_state_dict(child.state_dict())
            replacement.train(child.training)
            setattr(module, name, replacement)
        else:
            synchronise_batchnorm(child, device_type)
    return module
