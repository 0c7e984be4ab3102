"""Teacher-layer injection (TLI): the ASR mapped into the student's shapes, tensor by tensor in order.

A tensor of the same rank is centre-cropped (dimensions where the teacher is larger) and
zero-padded, centred (dimensions where it is smaller), to the student's shape."""

from __future__ import annotations

import torch

from ...errors import UserError
from .asr import Params, _shape


def fit_tensor(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """`t` centre-cropped / zero-padded to `shape` (same rank)."""
    if t.dim() != len(shape):
        raise ValueError(f"rank {t.dim()} tensor cannot take shape {shape}")
    source, target = [], []
    for have, want in zip(t.shape, shape):
        if have >= want:
            start = (have - want) // 2
            source.append(slice(start, start + want))
            target.append(slice(0, want))
        else:
            start = (want - have) // 2
            source.append(slice(0, have))
            target.append(slice(start, start + have))
    out = torch.zeros(shape, dtype=t.dtype, device=t.device)
    out[tuple(target)] = t[tuple(source)]
    return out


def inject(asr: Params, student: Params) -> tuple[list[torch.Tensor], list[dict]]:
    """Targets T (one per student tensor) and the mapping teacher shape → student shape per tensor."""
    for i in range(max(len(asr), len(student))):
        if i >= len(asr) or i >= len(student):
            side, (name, t) = ("teacher", asr[i]) if i < len(asr) else ("student", student[i])
            raise UserError(
                f"the ASR has {len(asr)} parameter tensors but the student has {len(student)}: {side} tensor {i} "
                f"{name} ({_shape(t.shape)}) has no counterpart; use a student with the teacher's layer layout "
                "(same number of layers)")
        (t_name, t), (s_name, s) = asr[i], student[i]
        if t.dim() != s.dim():
            raise UserError(
                f"the ASR cannot be injected into the student: tensor {i} teacher {t_name} ({_shape(t.shape)}, rank "
                f"{t.dim()}) vs student {s_name} ({_shape(s.shape)}, rank {s.dim()}); use a student with the "
                "teacher's layer types")
    targets, mapping = [], []
    for i, ((t_name, t), (s_name, s)) in enumerate(zip(asr, student)):
        targets.append(fit_tensor(t.detach().to(s.dtype), tuple(s.shape)).to(s.device))
        ops = {"crop" if a > b else "pad" for a, b in zip(t.shape, s.shape) if a != b}
        mapping.append({"index": i, "teacher": t_name, "teacher_shape": list(t.shape), "student": s_name,
                        "student_shape": list(s.shape), "op": "+".join(sorted(ops)) or "copy"})
    return targets, mapping
