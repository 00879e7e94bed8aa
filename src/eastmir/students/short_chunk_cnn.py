"""Short-chunk CNN with residual blocks (Won et al., ICASSP 2021 / "Evaluation
of CNN-based automatic music tagging models", SMC 2020), the MagnaTagATune
student of the embedding-compression paper.

Input BN, then seven residual blocks, each stride 2 in both axes
(widths c, c, 2c, 2c, 2c, 2c, 4c; c = 128): conv 3×3 → BN → ReLU → conv
3×3 → BN, plus a projection shortcut (conv + BN), then ReLU. Global max
over time, then dense 4c → 4c, BN, ReLU, dropout 0.5 and the classifier.
Designed for 128 mels × ≈3.7 s chunks (16 kHz, hop 256).

Parameter count: the published 9.1 M is reached with **1×1** projection
shortcuts: 9 062 914 without the classifier (−0.4 %; the default,
``shortcut_kernel=1``). Won et al.'s code uses 3×3 shortcut convs, which
gives 12 078 594 (+33 %); ``shortcut_kernel=3`` builds that.

Stages (averaged over frequency → ``(batch, time, channels)``): after
blocks 3 (2c, 8 input frames per frame), 5 (2c, 32) and 7 (4c, 128).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eastmir.frontend import FrontendConfig
from eastmir.numbers import Dropout
from eastmir.registry import STUDENTS
from eastmir.students.base import Student, StudentOutput


class ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 2, shortcut_kernel: int = 1) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.bn_1 = nn.BatchNorm2d(c_out)
        self.conv_2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.bn_2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential(
            nn.Conv2d(c_in, c_out, shortcut_kernel, stride=stride, padding=shortcut_kernel // 2), nn.BatchNorm2d(c_out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn_2(self.conv_2(F.relu(self.bn_1(self.conv_1(x)))))
        return F.relu(out + self.shortcut(x))


@STUDENTS.register("short_chunk_cnn")
class ShortChunkCNN(Student):
    complexity_frontend = FrontendConfig(
        sample_rate=16000, n_fft=512, win_length=512, hop_length=256, n_mels=128, fmax=8000.0
    )
    """Log-mel ``(batch, mels, frames)`` → :class:`StudentOutput`."""

    stage_hops = (8, 32, 128)
    STAGE_AFTER = (2, 4, 6)

    def __init__(self, num_classes: int, channels: int = 128, shortcut_kernel: int = 1, dropout: Dropout = 0.5) -> None:
        super().__init__()
        c = channels
        widths = [(1, c), (c, c), (c, 2 * c), (2 * c, 2 * c), (2 * c, 2 * c), (2 * c, 2 * c), (2 * c, 4 * c)]
        self.stage_dims = (2 * c, 2 * c, 4 * c)
        self.spec_bn = nn.BatchNorm2d(1)
        self.blocks = nn.ModuleList([ResidualBlock(i, o, 2, shortcut_kernel) for i, o in widths])
        self.dense = nn.Sequential(nn.Linear(4 * c, 4 * c), nn.BatchNorm1d(4 * c), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Linear(4 * c, num_classes)

    def forward(self, logmel: torch.Tensor) -> StudentOutput:
        x = self.spec_bn(logmel.unsqueeze(1))
        stages = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.STAGE_AFTER:
                stages.append(x.mean(dim=2).transpose(1, 2))
        pooled = x.mean(dim=2).amax(dim=2)  # frequency is 1 for 128 mels; global max over time
        return StudentOutput(self.head(self.dense(pooled)), stages)
