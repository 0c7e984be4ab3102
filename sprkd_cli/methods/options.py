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
GATE_PANEL = "sprkd's gate (when NHE and PGD may act)"
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
    """sprkd's options. The defaults follow the reference implementation (docs/methods.md, "sprkd"); the
    paper-prose variants are choices: --nhe-step eigenvector, --pgd-noise relative, --accept probe-loss."""
    name = "sprkd"
    implementation = "sprkd:SPRKD"
    from_training = ("probe_batches", "probe_size", "probe_mode", "batch_size")
    asr: bool = option(True, "Ablation: no ASR, injection or approach (the student starts from its own init).",
                       panel=SPRKD_PANEL, flag="--no-asr")
    asr_revive: bool = option(False, "Units that the injected ASR leaves dead on the probe set (a ReLU never "
                                     "positive) take the student's own initial weights and a zero bias.",
                              panel=SPRKD_PANEL,
                              flag="--asr-revive")
    asr_pick: str = option("last", "Each teacher's strong saddle in the ASR: the latest (last) or the lowest "
                                   "probe loss.", panel=SPRKD_PANEL, choices=("last", "lowest-loss"))
    saddle_rule: str = option("magnitude", "A candidate is a strong saddle when S- >= beta (magnitude), "
                                           "S- >= alpha*S+ (ratio) or both.", panel=SADDLE_PANEL,
                              choices=SADDLE_RULES)
    saddle_alpha: float = option(0.4, "alpha of the ratio rule.", panel=SADDLE_PANEL, check=at_least(0))
    saddle_beta: float = option(7.0, "beta of the magnitude rule.", panel=SADDLE_PANEL, check=at_least(0))
    saddle_fallback: str = option("last", "A teacher none of whose candidates passes the rule: its latest "
                                          "candidate (last) or its highest-scoring one (best), with a warning; "
                                          "none: an error.", panel=SADDLE_PANEL, choices=("last", "best", "none"))
    approach_eps: float = option(1e-3, "A tensor stops approaching at RMS distance <= eps from its target.",
                                 panel=SPRKD_PANEL, check=above(0))
    approach_max_steps: int = option(200, "Every tensor stops approaching after this many steps.", panel=SPRKD_PANEL,
                                     check=at_least(0))
    nhe_gate: str = option("tensor", "The gate's gradient test: tensor (some parameter tensor's mini-batch "
                                     "gradient has ‖g_i‖₂ < j; that tensor is the one PGD perturbs) or global (the "
                                     "whole mini-batch gradient has ‖g‖₂ <= j).", panel=GATE_PANEL,
                           choices=("tensor", "global"))
    nhe_grad_threshold: float = option(0.01, "The gate's gradient-norm threshold j.", panel=GATE_PANEL,
                                       check=at_least(0))
    gate_distance: float = option(5.0, "The gate opens only once the student has moved from its start: the mean "
                                       "over tensors of |‖S_i‖₂ - ‖T_i‖₂| must exceed this (T: the ASR target, or the "
                                       "initial weights with --no-asr; 0: no such condition).", panel=GATE_PANEL,
                                  check=at_least(0))
    gate_loss_drop: float = option(0.002, "After an event the gate opens again only once the training loss has "
                                          "fallen by at least this much (0: no such condition).", panel=GATE_PANEL,
                                   check=at_least(0))
    gate_epochs: int = option(100, "NHE and PGD only in the first N epochs.", panel=GATE_PANEL, check=at_least(0))
    cooldown: int = option(20, "Steps after an NHE or PGD event before the gate may open again.", panel=GATE_PANEL,
                           check=at_least(0))
    nhe: bool = option(True, "Ablation: no negative Hessian eigensteps.", panel=SPRKD_PANEL, flag="--no-nhe")
    nhe_step: str = option("elementwise", "elementwise: θ ← θ - (g⊙v⊙v)/|λ| with λ the smaller of the two "
                                          "eigenvalues of largest magnitude (only when negative); eigenvector: "
                                          "θ ← θ + α·s·v along λmin's eigenvector, α = scale·|λmin|.",
                           panel=SPRKD_PANEL, choices=("elementwise", "eigenvector"))
    nhe_hessian: str = option("batch", "The Hessian NHE reads: the current mini-batch's (batch) or the run's "
                                       "probe set's (probe).", panel=SPRKD_PANEL, choices=("batch", "probe"))
    nhe_max: int = option(50, "At most this many NHE attempts (each one Lanczos run, with or without a step).",
                          panel=SPRKD_PANEL, check=at_least(0))
    nhe_lanczos_steps: int = option(100, "At most this many Lanczos steps (Hessian-vector products) per NHE "
                                         "attempt.", panel=SPRKD_PANEL, check=at_least(3))
    nhe_budget: float = option(1.0, "NHE's Hessian-vector products in an epoch cost at most this many of the "
                                    "epoch's training steps (a product on the mini-batch costs about one step; on "
                                    "the probe set, probe size / batch size steps); past it NHE waits for the next "
                                    "epoch.", panel=SPRKD_PANEL, check=at_least(0))
    nhe_tol: float = option(1e-4, "NHE steps only when λ < -tol.", panel=SPRKD_PANEL, check=at_least(0))
    nhe_scale: float = option(0.5, "--nhe-step eigenvector: step length α = scale·|λmin|.", panel=SPRKD_PANEL,
                              check=above(0))
    pgd: bool = option(True, "Ablation: no Gaussian perturbations.", panel=SPRKD_PANEL, flag="--no-pgd")
    pgd_noise: str = option("tensor", "tensor: the gate's tensor gets N(0, sigma²) noise; relative: every tensor "
                                      "gets N(0, (sigma·rms(θ_i))²).", panel=SPRKD_PANEL,
                            choices=("tensor", "relative"))
    pgd_sigma: float = option(0.316, "The perturbation's sd (absolute with --pgd-noise tensor: √0.1; relative "
                                     "to each tensor's RMS with --pgd-noise relative).", panel=SPRKD_PANEL,
                              check=at_least(0))
    accept: str = option("always", "always: NHE and PGD steps are kept; probe-loss: an NHE step is kept only if "
                                   "the probe loss fell (eigenvector steps halve α up to 3 times first), a "
                                   "perturbation only if it did not rise; otherwise undone exactly.",
                         panel=SPRKD_PANEL, choices=("always", "probe-loss"))
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
