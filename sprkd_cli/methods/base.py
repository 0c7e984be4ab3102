"""The interface every method implements."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from torch import Tensor, nn

# emit(kind, payload, step=None, epoch=None): one row in the run's event log
EventSink = Callable[..., None]


class Method:
    name: ClassVar[str]
    needs_teacher: ClassVar[bool] = False
    needs_saddles: ClassVar[bool] = False  # its teachers must carry saddle snapshots (train-teacher --track-saddles)
    # the student must be built for the teacher (sage: its body takes the teacher's embedding width), so a
    # comparison without --methods leaves the method out
    needs_matched_student: ClassVar[bool] = False
    # Works with --augment: then built with augmented=True, and must not cache anything computed from the
    # training inputs (they change every epoch).
    takes_augmented: ClassVar[bool] = False
    # Takes several teachers (--teacher A,B) as an ensemble (kd: the mean of their soft targets).
    takes_ensemble: ClassVar[bool] = False
    # Its options (default, type, help, check) are declared in methods/options.py, and arrive here as the
    # dict stored with the run.

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, index: Tensor) -> Tensor:
        """Mean training loss on the mini-batch `x, y`; `index` are its rows in the training set."""
        raise NotImplementedError

    # Optional hooks; the defaults do nothing, so a method that needs only a loss ignores them.
    def setup(self, model: nn.Module, *, seed: int, emit: EventSink) -> None:
        """Once, before training, with the seeded freshly built model (services.training.prepare calls
        it before the run is recorded, so a UserError here leaves no run behind). `emit(kind, payload,
        step=None, epoch=None)` records an event in the run's log."""

    def replace_step(self, model: nn.Module, step: int, epoch: int) -> bool:
        """Before the mini-batch of `step`: True when the method moved the parameters itself and the
        base optimiser step is to be skipped (the loop still counts the batch's loss, without gradient)."""
        return False

    def after_step(self, model: nn.Module, step: int, epoch: int) -> None:
        """After the base optimiser step (`.grad` still holds that mini-batch's gradient)."""

    def epoch_metrics(self) -> dict[str, float]:
        """At an epoch's end: the method's own numbers of that epoch, stored as train metrics (sprkd: its
        gate's statistic)."""
        return {}

    def summary(self) -> dict:
        """At the run's end: facts for the run's summary (sprkd: the teachers whose saddle fell back)."""
        return {}

    def state_dict(self) -> dict:
        """What the method has learnt or counted since setup (tensors, numbers, strings, lists, dicts), saved
        at epoch ends for --resume. setup's own work is redone on resume (from the same seed), not saved."""
        return {}

    def check_state(self, state: dict) -> None:
        """Raise UserError when a saved state_dict() cannot be restored (say, saved by an older sprkd in a
        form it no longer reads). Called before a resumed run's records are touched."""

    def load_state_dict(self, state: dict) -> None:
        """Restore state_dict()'s result, after setup."""

    def start_epoch(self, model: nn.Module, epoch: int, step: int) -> None:
        """Before the first mini-batch of `epoch` (`step` optimiser steps done so far); sage runs its
        rounds here. The model is in train mode when it returns."""
