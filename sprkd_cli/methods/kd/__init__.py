"""kd: Hinton knowledge distillation, a·CE(y, s) + b·T²·KL(softmax(t/T) ‖ softmax(s/T)), from one teacher
or the mean of several teachers' soft targets."""

from __future__ import annotations

from dataclasses import dataclass

from ...options import above, at_least, option
from ..contract import MethodOptions

KD_PANEL = "kd method"


@dataclass
class KDOptions(MethodOptions):
    name = "kd"
    rank = 1
    plain = True
    temperature: float = option(4.0, "Temperature T of the softened outputs.", panel=KD_PANEL, check=above(0))
    ce_weight: float = option(0.1, "Weight a of the label cross-entropy.", panel=KD_PANEL, check=at_least(0))
    kd_weight: float = option(0.9, "Weight b of the T²·KL term.", panel=KD_PANEL, check=at_least(0))

    @classmethod
    def load(cls):
        from .method import KD

        return KD

    def check(self) -> str | None:
        if self.ce_weight == 0 and self.kd_weight == 0:
            return "--ce-weight and --kd-weight are both 0: the loss would be 0 and nothing would train"
        return None

    def uses_teacher(self) -> bool:
        return True


OPTIONS = KDOptions
