"""compare --tune: a grid of option values per arm, chosen on validation accuracy only.

`--tune KEY=V1,V2,...` (repeatable) names any training option (lr, batch_size, epochs, ...) or method
option (temperature, saddle_alpha, ...). Every arm runs the whole grid (the product of the keys' values
that apply to it) on the tuning seeds with the same budget; a key applies to an arm unless its method has
no such option or the arm sets it itself (`--arm rkd=kd:temperature=1` keeps temperature at 1). The grid
point with the best mean validation accuracy over the tuning seeds wins, ties going to the lowest mean
validation loss (both at each run's selected epoch, see selection.py), then to the earlier point. The
test split is never read. Torch-free: the compare service trains the runs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from .errors import UserError
from .options import declared_fields, parse_value

TUNING_SUFFIX = ":tune"  # a grid run belongs to the arm "NAME:tune" (':' is not allowed in arm names)
NOT_TUNABLE = ("seed", "split_seed", "device", "precision", "data_dir", "cache_dir", "download", "checkpoint_every",
               "eval_noise", "hessian_every", "hessian_density")


def tuning_arm(name: str) -> str:
    return name + TUNING_SUFFIX


def is_tuning_arm(name: str) -> bool:
    return name.endswith(TUNING_SUFFIX)


@dataclass(frozen=True)
class TuneKey:
    key: str
    raw: tuple[str, ...]  # the values as given; typed per arm (a method option's type is its method's)
    training: bool  # a TrainConfig option (else a method option)


def parse_tune(specs: list[str]) -> list[TuneKey]:
    """`lr=1e-3,3e-3` each: the key must be a training or some method's option, given once, with at least
    one value (each value is typed when an arm takes it, arm_grid; the training ones checked with the
    template, check_training_grid)."""
    from .config import TrainConfig
    from .methods import method_names, options_class

    training = {f.name for f, d in declared_fields(TrainConfig)
                if d.cli and d.scope != "teacher" and f.name not in NOT_TUNABLE}
    method = {f.name for m in method_names() for f, _ in declared_fields(options_class(m))}
    keys: list[TuneKey] = []
    for spec in specs:
        key, eq, rest = spec.partition("=")
        key = key.strip().replace("-", "_")
        values = tuple(v.strip() for v in rest.split(",") if v.strip())
        if not eq or not key or not values:
            raise UserError(f"bad --tune '{spec}': write KEY=V1,V2,... e.g. lr=1e-3,3e-3,1e-2")
        if key not in training and key not in method:
            raise UserError(f"--tune {key}: not a training or method option that can be tuned; valid: "
                            f"{', '.join(sorted(training | method))}")
        if any(k.key == key for k in keys):
            raise UserError(f"--tune {key} is given twice; give all its values in one --tune {key}=V1,V2")
        if len(set(values)) != len(values):
            raise UserError(f"--tune {key}: a value is given twice in '{rest}'")
        keys.append(TuneKey(key, values, key in training))
    return keys


def arm_grid(keys: list[TuneKey], method: str, explicit: dict) -> list[dict]:
    """The grid points of an arm: dicts {key: typed value} over the keys that apply to it, in the order
    given (the first key varies slowest). [{}] when none applies."""
    from .config import TrainConfig
    from .methods import options_class

    cls = options_class(method)
    own = {f.name for f, _ in declared_fields(cls)}
    axes = []
    for k in keys:
        if k.key in explicit or (not k.training and k.key not in own):
            continue
        owner = TrainConfig if k.training else cls
        axes.append([(k.key, parse_value(owner, k.key, raw, f"--tune {k.key}")) for raw in k.raw])
    return [dict(point) for point in itertools.product(*axes)]


def split_point(point: dict) -> tuple[dict, dict]:
    """(training values, method values) of a grid point."""
    from .config import TrainConfig

    training = TrainConfig.__dataclass_fields__
    return ({k: v for k, v in point.items() if k in training}, {k: v for k, v in point.items() if k not in training})


def check_training_grid(template, keys: list[TuneKey]) -> None:
    """The template with each point of the tuned training options' grid, checked as a run's config is (a
    bad value is one line): at the command's edge, before any run, as the template itself is."""
    training = [k for k in keys if k.training]
    if not training:
        return
    for point in arm_grid(training, template.method, {}):
        try:
            replace(template, **point).check()
        except UserError as exc:
            raise UserError(f"--tune: {exc}") from None


@dataclass
class Score:
    point: dict
    val_acc: float  # mean over the tuning seeds of each run's selected-epoch validation accuracy
    val_loss: float
    run_ids: list[str]


def choose(scores: list[Score]) -> Score:
    """The best grid point: highest mean validation accuracy, then lowest mean validation loss, then the
    earliest in the grid."""
    from .selection import better

    best = scores[0]
    for score in scores[1:]:
        if better(score.val_acc, score.val_loss, best.val_acc, best.val_loss):
            best = score
    return best
