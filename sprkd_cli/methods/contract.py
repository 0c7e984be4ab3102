"""What a method is, in one place: a package under methods/ (or any module named in $SPRKD_METHODS) whose
`OPTIONS` is a `MethodOptions` dataclass.

- The options class is the method's declaration, importable without torch: its name, its options (each
  a declared field: default, type, help, check; the CLI derives their flags), the checks of its options
  together, which teachers a student of it takes (`uses_teacher`, `choose_teachers`), and `load()`,
  which imports the method's implementation (torch) on first use.
- The implementation is a `Method`: `prepare(context)` resolves what it needs from a `MethodContext`
  (its typed options, the run's config and data, the store, the teacher runs) and returns the method;
  then come its loss and its hooks around the training loop (engine.loop.fit).

Adding a method is adding one such package; the registry (methods/registry.py) finds it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import UserError

if TYPE_CHECKING:
    from ..config import TrainConfig
    from ..store import Run, Store

# emit(kind, payload, step=None, epoch=None): one row in the run's event log
Emit = Callable[..., None]


@dataclass
class MethodOptions:
    """A method's declaration and its options (the dataclass fields, each made with options.option)."""

    name: ClassVar[str]
    rank: ClassVar[int] = 100  # order among the methods in listings and help (built-in: 0-3)
    plain: ClassVar[bool] = False  # compared when --methods is not given (needs no more than a plain teacher)
    # TrainConfig fields the method reads too (from its context's config): stored with its options, so they
    # stay part of its record
    from_training: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def load(cls) -> type[Method]:
        """The method's implementation (imports torch)."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        return asdict(self)

    def stored(self, training: TrainConfig | None = None) -> dict:
        """The options as a run stores them (its config's method_options): these fields, and the training
        fields of `from_training` from `training` (a TrainConfig; its defaults when None)."""
        from ..config import TrainConfig

        training = training or TrainConfig(kind="student", method=self.name, dataset="", model="")
        return self.to_dict() | {key: getattr(training, key) for key in self.from_training}

    @classmethod
    def from_stored(cls, stored: dict) -> MethodOptions:
        """The options as a run stores them (its config's method_options: these fields, plus the training
        fields of `from_training`), typed."""
        return cls(**{f.name: stored[f.name] for f in fields(cls) if f.name in stored})

    def check(self) -> str | None:
        """What is wrong with the options together (each one alone is checked by its declaration), or None."""
        return None

    def uses_teacher(self) -> bool:
        """Whether a student of the method with these options reads anything from a teacher run."""
        return False

    def choose_teachers(self, store: Store, refs: list[str] | None, dataset: str, split_seed: int,
                        student: str) -> list[str]:
        """The teacher run ids of a student: those of `refs` (ids or unique prefixes, as --teacher gives them),
        else the dataset's latest finished teacher of the split; none when the method uses no teacher."""
        if not self.uses_teacher():
            return []
        if refs:
            return list(dict.fromkeys(store.get_run(ref).id for ref in refs))
        run = store.latest_teacher(dataset, split_seed)
        if run is None:
            raise UserError(f"no finished teacher for dataset {dataset} (split seed {split_seed}) in "
                            f"{store.shown_url}; train one first: sprkd train-teacher --dataset {dataset} "
                            f"--split-seed {split_seed}")
        return [run.id]


@dataclass
class MethodContext:
    """What a method's prepare step may read. The teacher runs are the student's (checked against its data);
    `load_model(run)` rebuilds a stored run's model from its best checkpoint, in eval mode."""

    config: TrainConfig
    options: MethodOptions
    data: Any  # data.Splits
    device: Any  # torch.device: where the student trains
    store: Store
    teacher_runs: list[Run]
    load_model: Callable[[Run], Any]

    def teacher_models(self) -> list:
        """The teachers' models, on the run's device."""
        return [self.load_model(run).to(self.device) for run in self.teacher_runs]

    def one_teacher(self):
        """The single teacher's model (a method that takes no ensemble)."""
        if len(self.teacher_runs) != 1:
            raise UserError(f"method {self.options.name} takes one teacher; {len(self.teacher_runs)} were given")
        return self.teacher_models()[0]

    def refuse_augment(self) -> None:
        """For a method whose inputs must stay the same every epoch: --augment is refused."""
        if self.config.augment:
            raise UserError(f"method {self.options.name} does not support --augment yet; run it without --augment")


class Method:
    """A training method: a loss on a mini-batch of training examples, and optional hooks around the loop."""

    options: MethodOptions

    @classmethod
    def prepare(cls, context: MethodContext) -> Method:
        """The method for one run, with everything it reads resolved: before the student is built and seeded,
        and before the run is recorded (a UserError here leaves no run behind)."""
        raise NotImplementedError

    def loss(self, model, x, y, index):
        """Mean training loss on the mini-batch `x, y`; `index` are its rows in the training set."""
        raise NotImplementedError

    # Optional hooks; the defaults do nothing, so a method that needs only a loss ignores them.
    def setup(self, model, *, seed: int, emit: Emit) -> None:
        """Once, before training, with the seeded freshly built model (still before the run is recorded).
        `emit(kind, payload, step=None, epoch=None)` records an event in the run's log."""

    def replace_step(self, model, step: int, epoch: int) -> bool:
        """Before the mini-batch of `step`: True when the method moved the parameters itself and the
        base optimiser step is to be skipped (the loop still counts the batch's loss, without gradient)."""
        return False

    def after_step(self, model, step: int, epoch: int) -> None:
        """After the base optimiser step (`.grad` still holds that mini-batch's gradient)."""

    def start_epoch(self, model, epoch: int, step: int) -> None:
        """Before the first mini-batch of `epoch` (`step` optimiser steps done so far); sage runs its
        rounds here. The model is in train mode when it returns."""

    def epoch_metrics(self) -> dict[str, float]:
        """At an epoch's end: the method's own numbers of that epoch, stored as train metrics (sprkd: its
        gate's statistic)."""
        return {}

    def summary(self) -> dict:
        """At the run's end: facts for the run's summary (sprkd: the teachers whose saddle fell back)."""
        return {}

    def state_dict(self) -> dict:
        """What the method has learnt or counted since setup (tensors, numbers, strings, lists, dicts), saved
        at epoch ends for --resume. prepare's and setup's work is redone on resume (same seed), not saved."""
        return {}

    def check_state(self, state: dict) -> None:
        """Raise UserError when a saved state_dict() cannot be restored (say, saved by an older sprkd in a
        form it no longer reads). Called before a resumed run's records are touched."""

    def load_state_dict(self, state: dict) -> None:
        """Restore state_dict()'s result, after setup."""
