"""Each method's options, declared once (default, type, help, check), and the method registry.

Importable without torch: `sprkd --help`, `stats` and `runs` read the method names and options from
here; the method classes themselves (which need torch) load on first use through `method_class`.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from typing import ClassVar

from ..errors import UserError, unknown_name
from ..options import above, at_least, between, check_options, coerce, declared_fields, option

KD_PANEL = "kd method"
SPRKD_PANEL = "sprkd method"
SAGE_PANEL = "sage method"
SADDLE_PANEL = "sprkd's strong saddles (applied to the teachers' stored candidates)"
SADDLE_RULES = ("ratio", "magnitude", "both")


@dataclass
class MethodOptions:
    name: ClassVar[str]
    implementation: ClassVar[str]  # module:Class of the method, relative to this package
    plain: ClassVar[bool] = False  # compared when --methods is not given (needs no more than a plain teacher)
    # TrainConfig fields the method reads too: copied into its options, so they stay part of its record
    from_training: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> str | None:
        """What is wrong with the options together (each one alone is checked by its declaration), or None."""
        return None


@dataclass
class SGDOptions(MethodOptions):
    name = "sgd"
    implementation = "sgd:SGD"
    plain = True


@dataclass
class KDOptions(MethodOptions):
    name = "kd"
    implementation = "kd:KD"
    plain = True
    temperature: float = option(4.0, "Temperature T of the softened outputs.", panel=KD_PANEL, check=above(0))
    ce_weight: float = option(0.1, "Weight a of the label cross-entropy.", panel=KD_PANEL, check=at_least(0))
    kd_weight: float = option(0.9, "Weight b of the T²·KL term.", panel=KD_PANEL, check=at_least(0))

    def check(self) -> str | None:
        if self.ce_weight == 0 and self.kd_weight == 0:
            return "--ce-weight and --kd-weight are both 0: the loss would be 0 and nothing would train"
        return None


@dataclass
class SPRKDOptions(MethodOptions):
    name = "sprkd"
    implementation = "sprkd:SPRKD"
    from_training = ("probe_batches", "probe_size", "probe_mode")
    asr: bool = option(True, "Ablation: no ASR, injection or approach (the student starts from its own init).",
                       panel=SPRKD_PANEL, flag="--no-asr")
    asr_pick: str = option("lowest-loss", "Each teacher's strong saddle in the ASR.", panel=SPRKD_PANEL,
                           choices=("lowest-loss", "last"))
    saddle_rule: str = option("ratio", "A candidate is a strong saddle when S- >= alpha*S+ (ratio), S- >= beta "
                                       "(magnitude) or both.", panel=SADDLE_PANEL, choices=SADDLE_RULES)
    saddle_alpha: float = option(0.4, "alpha of the ratio rule.", panel=SADDLE_PANEL, check=at_least(0))
    saddle_beta: float = option(7.0, "beta of the magnitude rule (the reference implementation's default).",
                                panel=SADDLE_PANEL, check=at_least(0))
    saddle_fallback: str = option("best", "A teacher none of whose candidates passes the rule: best (its "
                                          "highest-scoring candidate, with a warning) or none (an error).",
                                  panel=SADDLE_PANEL, choices=("best", "none"))
    approach_eps: float = option(1e-3, "A tensor stops approaching at RMS distance <= eps from its target.",
                                 panel=SPRKD_PANEL, check=above(0))
    approach_max_steps: int = option(200, "Every tensor stops approaching after this many steps.", panel=SPRKD_PANEL,
                                     check=at_least(0))
    nhe: bool = option(True, "Ablation: no negative Hessian eigensteps.", panel=SPRKD_PANEL, flag="--no-nhe")
    nhe_gate: str = option("tensor", "When NHE/PGD may run: tensor (some parameter tensor's mini-batch gradient has "
                                     "‖g_i‖₂ < the threshold, the reference implementation's rule) or global (the "
                                     "whole mini-batch gradient has ‖g‖₂ <= it).", panel=SPRKD_PANEL,
                           choices=("tensor", "global"))
    nhe_grad_threshold: float = option(0.01, "The gate's gradient-norm threshold j.", panel=SPRKD_PANEL,
                                       check=at_least(0))
    nhe_max: int = option(50, "At most this many negative-curvature eigensteps; attempts that find no negative "
                              "eigenvalue do not count.", panel=SPRKD_PANEL, check=at_least(0))
    nhe_tol: float = option(1e-4, "NHE steps only when lambda_min < -tol.", panel=SPRKD_PANEL, check=at_least(0))
    nhe_scale: float = option(0.5, "NHE step length alpha = scale*|lambda_min|.", panel=SPRKD_PANEL, check=above(0))
    pgd: bool = option(True, "Ablation: no Gaussian perturbations.", panel=SPRKD_PANEL, flag="--no-pgd")
    pgd_epochs: int = option(15, "Gaussian perturbations in the first N epochs only.", panel=SPRKD_PANEL,
                             check=at_least(0))
    pgd_sigma: float = option(0.1, "Perturbation sd, relative to each tensor's RMS.", panel=SPRKD_PANEL,
                              check=at_least(0))
    cooldown: int = option(10, "Steps after an NHE or PGD event before the next.", panel=SPRKD_PANEL,
                           check=at_least(0))
    kd_weight: float = option(0.0, "Weight of the KD term from the teachers' outputs (0: none).", panel=SPRKD_PANEL,
                              check=at_least(0))
    temperature: float = option(4.0, "Temperature of the KD term.", panel=SPRKD_PANEL, check=above(0))


@dataclass
class SAGEOptions(KDOptions):
    name = "sage"
    implementation = "sage:SAGE"
    plain = False
    sage_rounds: int = option(3, "Rounds of synthesis.", panel=SAGE_PANEL, check=at_least(0))
    sage_every: int = option(1, "A round every N epochs.", panel=SAGE_PANEL, check=at_least(1))
    sage_umap_max: int = option(5000, "UMAP is fitted on at most this many real vectors plus all anchors.",
                                panel=SAGE_PANEL, check=at_least(1))
    sage_percentile: float = option(90.0, "Anchors: real examples at or above this percentile of student loss.",
                                    panel=SAGE_PANEL, check=between(0, 100))
    sage_per_anchor: int = option(2, "Synthetic points per anchor.", panel=SAGE_PANEL, check=at_least(1))
    sage_k: int = option(5, "Neighbours in the 2-D map an anchor picks from.", panel=SAGE_PANEL, check=at_least(1))
    sage_synth: str = option("inverse", "inverse (UMAP inverse transform of the 2-D point) or interpolate (the two "
                                        "original vectors); token sequences always interpolate.", panel=SAGE_PANEL,
                             choices=("inverse", "interpolate"))
    sage_max_synth: int = option(5000, "A round adds at most min(10% of the training set, this) synthetic vectors.",
                                 panel=SAGE_PANEL, check=at_least(0))


METHOD_OPTIONS: dict[str, type[MethodOptions]] = {c.name: c for c in (SGDOptions, KDOptions, SPRKDOptions, SAGEOptions)}


def method_names() -> list[str]:
    return list(METHOD_OPTIONS)


def plain_methods() -> list[str]:
    """What --methods means when not given: the methods that need no more than a plain teacher (sprkd needs
    tracked saddles, sage a student built for the teacher's embedding; both are asked for by name)."""
    return [name for name, cls in METHOD_OPTIONS.items() if cls.plain]


def options_class(name: str) -> type[MethodOptions]:
    if name not in METHOD_OPTIONS:
        raise unknown_name("method", name, METHOD_OPTIONS)
    return METHOD_OPTIONS[name]


def method_class(name: str):
    """The method's class (imports torch)."""
    module, _, cls = options_class(name).implementation.partition(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), cls)


def method_options(name: str, given: dict, training=None, *, where=None) -> dict:
    """The method's options as stored with a run: its declared defaults overridden by what was given
    (None = not given; keys the method does not declare are ignored), checked, plus the training fields it
    reads from `training` (a TrainConfig; defaults when None). `where(name, declared)` names an option in
    error messages (default: its flag)."""
    from ..config import TrainConfig

    cls = options_class(name)
    own = {f.name for f, _ in declared_fields(cls)}
    options = cls(**coerce(cls, {k: v for k, v in given.items() if k in own and v is not None}))
    check_options(options, where)
    wrong = options.check()
    if wrong:
        raise UserError(wrong if where is None else f"{where('', None).rstrip(': ')}: {wrong}")
    training = training or TrainConfig(kind="student", method=name, dataset="", model="")
    return options.to_dict() | {key: getattr(training, key) for key in cls.from_training}


def check_used(methods: list[str], given: dict, label: str | None = None) -> None:
    """UserError for a method option given (not None) that none of `methods` has: a flag that would
    silently do nothing (distill --method kd --nhe-gate global). `label` names it (default: its flag)."""
    from ..options import flag_name

    for key, value in given.items():
        if value is None:
            continue
        owners = [m for m in method_names() if any(f.name == key for f, _ in declared_fields(options_class(m)))]
        if owners and not set(owners) & set(methods):
            declared = next(d for f, d in declared_fields(options_class(owners[0])) if f.name == key)
            name = label or flag_name(key, declared)
            subject = f"method {methods[0]} does" if len(methods) == 1 else f"the arms' methods ({', '.join(methods)}) do"
            raise UserError(f"{name} is an option of {', '.join(owners)}; {subject} not use it: drop {name}")


def parse_methods(text: str | None) -> list[str]:
    """A --methods value: comma-separated known method names; not given: the plain methods."""
    if text is None:
        return plain_methods()
    names = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not names:
        raise UserError(f"bad --methods '{text}': give comma-separated methods, e.g. {','.join(METHOD_OPTIONS)}")
    for name in names:
        options_class(name)
    return names
