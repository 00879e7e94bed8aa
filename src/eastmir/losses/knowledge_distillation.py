"""Classical knowledge distillation (Hinton et al. 2015) from the TeacherLR head.

- multi-label (``single_label=False``): per-class binary KD: the KL
  divergence between Bernoulli(σ(z_t/τ)) and Bernoulli(σ(z_s/τ)), averaged
  over the **labelled** entries only (masked like ``L_pred``, so KD adds no
  labels OpenMIC does not have), times τ².
- single-label: KL(softmax(z_t/τ) ‖ softmax(z_s/τ)), mean over the batch, × τ².
- ``hard=True``: the teacher's decision (σ(z_t) > 0.5, or its arg-max) as
  the target of an ordinary (masked) cross-entropy; τ is not used. (The
  authors' hard mode crashed: a legacy ``reduce=`` argument made the loss a
  scalar before masking.)

The teacher logits are detached.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from eastmir.losses.prediction import masked_binary_cross_entropy


def knowledge_distillation(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 2.0,
    single_label: bool = False,
    hard: bool = False,
) -> torch.Tensor:
    """``student_logits``, ``teacher_logits``, ``mask`` ``(batch, classes)`` → scalar."""
    teacher_logits = teacher_logits.detach().to(student_logits.dtype)
    if single_label:
        if hard:
            return F.cross_entropy(student_logits, teacher_logits.argmax(dim=1))
        t = temperature
        log_p_s = F.log_softmax(student_logits / t, dim=1)
        log_p_t = F.log_softmax(teacher_logits / t, dim=1)
        return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean") * t * t
    if mask is None:
        mask = torch.ones_like(student_logits, dtype=torch.bool)
    if hard:
        return masked_binary_cross_entropy(student_logits, (teacher_logits > 0).to(student_logits.dtype), mask)
    t = temperature
    zs, zt = student_logits / t, teacher_logits / t
    p_t = torch.sigmoid(zt)
    # KL(Bern(p_t) || Bern(p_s)) with log-sigmoids for stability
    kl = p_t * (F.logsigmoid(zt) - F.logsigmoid(zs)) + (1 - p_t) * (F.logsigmoid(-zt) - F.logsigmoid(-zs))
    w = mask.to(kl.dtype)
    return (kl * w).sum() / w.sum().clamp_min(1.0) * t * t
