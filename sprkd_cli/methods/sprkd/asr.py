"""The Approximated Saddle Region: element-wise mean over the teachers of one saddle snapshot each."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import UserError

Params = list[tuple[str, torch.Tensor]]  # parameter tensors in the model's order


@dataclass
class TeacherSaddle:
    """One teacher's chosen saddle snapshot."""

    teacher: str  # run id (or any label naming the teacher in messages)
    model: str  # the teacher's model spec
    saddle_id: int
    step: int
    probe_loss: float
    params: Params
    fallback: bool = False  # no candidate passed the student's rule: the teacher's best candidate instead


def build_asr(saddles: list[TeacherSaddle]) -> Params:
    """Element-wise mean of the snapshots; every teacher must have the first one's architecture."""
    if not saddles:
        raise UserError("the ASR needs at least one teacher saddle snapshot")
    first = saddles[0]
    layout = [(name, tuple(t.shape)) for name, t in first.params]
    for other in saddles[1:]:
        theirs = [(name, tuple(t.shape)) for name, t in other.params]
        if theirs != layout:
            raise UserError(
                f"teachers {first.teacher} ({first.model}) and {other.teacher} ({other.model}) have different "
                f"architectures ({_first_difference(layout, theirs)}); an ASR averages teachers of one architecture: "
                "pass teachers trained with the same --model")
    return [(name, torch.stack([s.params[i][1] for s in saddles]).mean(dim=0))
            for i, (name, _) in enumerate(layout)]


def _first_difference(a: list[tuple[str, tuple]], b: list[tuple[str, tuple]]) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"tensor {i}: {x[0]} {_shape(x[1])} vs {y[0]} {_shape(y[1])}"
    return f"{len(a)} vs {len(b)} parameter tensors"


def _shape(shape) -> str:
    return "x".join(map(str, shape)) or "scalar"
