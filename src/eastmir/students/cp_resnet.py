"""CP-ResNet: the receptive-field-regularised ResNet of Koutini et al.
(EUSIPCO 2019; TASLP 2021), the OpenMIC student of Ding & Lerch (ISMIR 2023).

A 5×5 stride-2 input conv (``base`` channels), then three stages of four
basic residual blocks (``base``, ``2·base``, ``4·base`` channels; 2×2
max-pool after blocks 1, 2 and 4 of stage 1). ρ sets the kernel sizes
(3 or 1) of every block and so bounds the receptive field; ρ = 7 is the
published setting. Convs have no bias and padding ``k // 3`` (Koutini's
choice). Each block: conv → BN → ReLU → conv → BN, plus the shortcut (1×1
conv + BN when the width changes), then ReLU.

Backbone parameters at ρ = 7 and 128 channels: **5 524 352** (the paper's
5.52 M; 5 534 612 with a 20-class head), as the authors' code builds.

Initialisation is Fixup-style (He init scaled by ``L^(-1/2)`` on each block's
first conv, zero second conv) with ``L`` = the number of residual blocks of
*this* model: the authors' code used a process-wide counter of blocks built
so far, so a second model built in the same process was initialised
differently.

Stages used for regularisation: the output of each stage averaged over
frequency → ``(batch, time, channels)``, 16 input frames per stage frame.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from eastmir.frontend import FrontendConfig
from eastmir.registry import STUDENTS
from eastmir.students.base import Student, StudentOutput


def _k(flag: bool, big: int, small: int) -> int:
    return big if flag else small


def kernel_sizes(rho: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Per stage ``(k1s, k2s)``: the first and second conv kernel of each of the 4 blocks, for ρ."""
    e = rho - 7  # receptive-field budget relative to the reference ρ = 7
    stage1 = (
        (3, _k(-e > 6, 1, 3), _k(-e > 4, 1, 3), _k(-e > 2, 1, 3)),
        (1, _k(-e > 5, 1, 3), _k(-e > 3, 1, 3), _k(-e > 1, 1, 3)),
    )
    stage2 = (
        (_k(-e > 0, 1, 3), _k(e > 1, 3, 1), _k(e > 3, 3, 1), _k(e > 5, 3, 1)),
        (1, _k(-e > 5, 1, 3), _k(-e > 3, 1, 3), _k(-e > 1, 1, 3)),
    )
    stage3 = (
        tuple(_k(e > t, 3, 1) for t in (7, 9, 11, 13)),
        tuple(_k(e > t, 3, 1) for t in (8, 10, 12, 14)),
    )
    return [stage1, stage2, stage3]


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, k1: int, k2: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, k1, padding=k1 // 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, k2, padding=k2 // 3, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))

    def fixup_init(self, n_blocks: int) -> None:
        fan = self.conv1.kernel_size[0] * self.conv1.kernel_size[1] * self.conv1.out_channels
        nn.init.normal_(self.conv1.weight, 0.0, n_blocks**-0.5 * math.sqrt(2.0 / fan))
        nn.init.zeros_(self.conv2.weight)
        if len(self.shortcut):
            conv = self.shortcut[0]
            nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / conv.out_channels))


POOL_AFTER = ({1, 2, 4}, set(), set())  # per stage: the blocks (from 1) a 2 × 2 max-pool follows


def _block(match: re.Match) -> str:
    """Their ``stage<s>.block<b>`` → our ``stages.<s-1>.<position>``, counting the pools before the block."""
    stage, block = int(match[1]) - 1, int(match[2]) - 1
    return f"stages.{stage}.{block + sum(1 for p in POOL_AFTER[stage] if p <= block)}"


@STUDENTS.register("cp_resnet")
class CPResNet(Student):
    complexity_options: ClassVar[dict[str, Any]] = {"rho": 7, "base_channels": 128}  # the OpenMIC recipe
    table2_options: ClassVar[dict[str, Any] | None] = {}
    complexity_frontend = FrontendConfig(sample_rate=32000, n_mels=128, fmax=16000.0)
    authors_keys = (
        (r"stage(\d+)\.block(\d+)\.shortcut\.conv\.", lambda m: f"{_block(m)}.shortcut.0."),
        (r"stage(\d+)\.block(\d+)\.shortcut\.bn\.", lambda m: f"{_block(m)}.shortcut.1."),
        (r"stage(\d+)\.block(\d+)\.", lambda m: f"{_block(m)}."),
        (r"feed_forward\.", "head."),
    )
    """Log-mel ``(batch, mels, frames)`` → :class:`StudentOutput`."""

    stage_hops = (16, 16, 16)

    def __init__(self, num_classes: int, rho: int = 7, base_channels: int = 128, in_channels: int = 1) -> None:
        super().__init__()
        self.stage_dims = (base_channels, 2 * base_channels, 4 * base_channels)
        self.in_c = nn.Sequential(
            nn.Conv2d(in_channels, base_channels, 5, stride=2, padding=2, bias=False),
            nn.BatchNorm2d(base_channels),
            nn.ReLU(inplace=True),
        )
        widths = [
            (base_channels, base_channels),
            (base_channels, 2 * base_channels),
            (2 * base_channels, 4 * base_channels),
        ]
        pools = POOL_AFTER
        self.stages = nn.ModuleList()
        for (c_in, c_out), (k1s, k2s), pool_after in zip(widths, kernel_sizes(rho), pools):
            layers: list[nn.Module] = []
            for i in range(4):
                layers.append(BasicBlock(c_in if i == 0 else c_out, c_out, k1s[i], k2s[i]))
                if i + 1 in pool_after:
                    layers.append(nn.MaxPool2d(2))
            self.stages.append(nn.Sequential(*layers))
        self.head = nn.Linear(4 * base_channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        blocks = [m for m in self.modules() if isinstance(m, BasicBlock)]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        for block in blocks:
            block.fixup_init(len(blocks))

    def forward(self, logmel: torch.Tensor) -> StudentOutput:
        x = self.in_c(logmel.unsqueeze(1))
        stages = []
        for stage in self.stages:
            x = stage(x)
            stages.append(x.mean(dim=2).transpose(1, 2))
        return StudentOutput(self.head(x.mean(dim=(2, 3))), stages)
