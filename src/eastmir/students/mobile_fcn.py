"""Mobile FCN: Choi et al.'s FCN with MobileNet-style depth-wise separable
convolutions, the MagnaTagATune student of Ding & Lerch (ISMIR 2023).

Eight conv blocks, no conv biases (as the authors' model). Pool sizes are
(frequency, time) for a ``(mels × frames)`` input:

=====  ========================  ========================
block  layers                    pool
=====  ========================  ========================
1      3×3 conv 1→64, BN, ReLU   (2, 4)
2      3×3 conv 64→128, BN, ReLU (2, 3)
3      dw-sep 128→128            (2, 2)
4      dw-sep 128→128            (3, 2) 96 mels / (4, 2) 128
5      dw-sep 128→128            (4, 2)
6      dw-sep 128→256            —
7      dw-sep 256→256            —
8      dw-sep 256→256            —
=====  ========================  ========================

dw-sep = 3×3 depth-wise conv, BN, ReLU, 1×1 point-wise conv, BN, ReLU.
Dropout 0.5 (``dropout_at: stages``, the authors'): one dropout applied three times in training, to
each stage's block output after the stage feature is taken (so stages 2 and 3 are computed from
dropped-out inputs), the last before the global average; ``dropout_at: head``: once, before the
head (eastmir before 2026-11-30). Then the global average over frequency and time, linear head.

Backbone parameters: **301 248** for 96 or 128 mels (314 098 with a 50-class
head). That is what the authors' published code builds; the paper's Table 2
says 0.34 M, which that code does not reach.

Stages used for regularisation (each averaged over frequency →
``(batch, time, channels)``): after block 4 (128 ch, 48 input frames per
frame), after block 6 (256 ch, 96) and after block 8 (256 ch, 96).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import nn

from eastmir.numbers import Dropout
from eastmir.registry import STUDENTS
from eastmir.students.base import Student, StudentOutput


def conv_bn_relu(c_in: int, c_out: int, kernel: int, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


def separable_block(c_in: int, c_out: int, pool: tuple[int, int] | None, separable: bool = True) -> nn.Sequential:
    if separable:
        layers = conv_bn_relu(c_in, c_in, 3, groups=c_in) + conv_bn_relu(c_in, c_out, 1)
    else:
        layers = conv_bn_relu(c_in, c_out, 3)
    if pool:
        layers.append(nn.MaxPool2d(pool))
    return nn.Sequential(*layers)


@STUDENTS.register("mobile_fcn")
class MobileFCN(Student):
    """Log-mel ``(batch, mels, frames)`` → :class:`StudentOutput`; ``n_mels`` is 96 or 128."""

    stage_dims = (128, 256, 256)
    stage_hops = (48, 96, 96)
    min_frames = 96  # total time pooling
    complexity_options: ClassVar[dict[str, Any]] = {"n_mels": 96}
    table2_options: ClassVar[dict[str, Any] | None] = {"n_mels": 128}
    authors_keys = (
        (r"layer(\d+)\.(conv|conv1)\.", "blocks.{1}.0."),
        (r"layer(\d+)\.(bn|bn1)\.", "blocks.{1}.1."),
        (r"layer(\d+)\.conv2\.", "blocks.{1}.3."),
        (r"layer(\d+)\.bn2\.", "blocks.{1}.4."),
        (r"dense\.", "head."),
    )
    added_options: ClassVar[dict[str, Any]] = {"dropout_at": "head"}  # its one dropout before 2026-11-30
    STAGE_AFTER = (3, 5, 7)  # block indices (0-based) whose outputs are stages

    separable = True

    def __init__(
        self,
        num_classes: int,
        n_mels: int = 96,
        dropout: Dropout = 0.5,
        dropout_at: Literal["stages", "head"] = "stages",
    ) -> None:
        super().__init__()
        if n_mels not in (96, 128):
            raise ValueError(
                f"{type(self).__name__} needs 96 or 128 mel bands (its pooling consumes exactly that), got {n_mels}"
            )
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(*conv_bn_relu(1, 64, 3), nn.MaxPool2d((2, 4))),
                nn.Sequential(*conv_bn_relu(64, 128, 3), nn.MaxPool2d((2, 3))),
                separable_block(128, 128, (2, 2), self.separable),
                separable_block(128, 128, (3 if n_mels == 96 else 4, 2), self.separable),
                separable_block(128, 128, (4, 2), self.separable),
                separable_block(128, 256, None, self.separable),
                separable_block(256, 256, None, self.separable),
                separable_block(256, 256, None, self.separable),
            ]
        )
        self.dropout = nn.Dropout(dropout)
        self.dropout_after = set(self.STAGE_AFTER) if dropout_at == "stages" else set()
        self.head = nn.Linear(256, num_classes)

    def forward(self, logmel: torch.Tensor) -> StudentOutput:
        if logmel.shape[-1] < self.min_frames and not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            raise ValueError(f"{type(self).__name__} needs at least {self.min_frames} frames, got {logmel.shape[-1]}")
        x = logmel.unsqueeze(1)  # (batch, 1, mels, frames)
        stages = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.STAGE_AFTER:
                stages.append(x.mean(dim=2).transpose(1, 2))  # (batch, time, channels)
            if i in self.dropout_after:
                x = self.dropout(x)
        pooled = (x if self.dropout_after else self.dropout(x)).mean(dim=(2, 3))
        return StudentOutput(self.head(pooled), stages)


@STUDENTS.register("fcn")
class FCN(MobileFCN):
    """The fully convolutional network (Choi et al., ISMIR 2016) in the layout
    Mobile FCN slims down: the same eight blocks, pools, widths and stages,
    with ordinary 3×3 convolutions (conv → BN → ReLU) in blocks 3–8 instead
    of depth-wise separable ones. 1 993 920 backbone parameters.
    """

    separable = False
