"""Hinton knowledge distillation from one teacher, or from the mean of several teachers' soft targets."""

from __future__ import annotations

import torch

from ..contract import Method, MethodContext, MethodOptions
from ..targets import ensemble_targets, teacher_targets
from .loss import kd_loss


class KD(Method):
    def __init__(self, options: MethodOptions, teachers: list[torch.nn.Module], data, augmented: bool = False):
        """`options`: KDOptions. Several `teachers` (`--teacher A,B`): ensemble KD, the KD term's target being
        the mean of the teachers' softmax(t/T), as sprkd's KD term does."""
        self.options = options
        self.temperature = options.temperature
        self.ce_weight = options.ce_weight
        self.kd_weight = options.kd_weight
        self.teachers = teachers
        # Unaugmented inputs are the same every epoch: the teacher's targets are computed once, not per
        # batch. Augmented ones (--augment) differ every time, so the teacher sees each batch as it is.
        self.augmented = augmented
        if not augmented:
            self.p_teacher, self.neg_entropy = self.targets(data.x_train)

    @classmethod
    def prepare(cls, context: MethodContext) -> KD:
        return cls(context.options, context.teacher_models(), context.data, augmented=context.config.augment)

    def targets(self, x):
        if len(self.teachers) == 1:
            return teacher_targets(self.teachers[0], x, self.temperature)
        return ensemble_targets(self.teachers, x, self.temperature)

    def loss(self, model, x, y, index):
        if self.augmented:
            p_teacher, neg_entropy = self.targets(x)
        else:
            p_teacher, neg_entropy = self.p_teacher[index], self.neg_entropy[index]
        return kd_loss(model(x), y, p_teacher, neg_entropy, self.temperature, self.ce_weight, self.kd_weight)
