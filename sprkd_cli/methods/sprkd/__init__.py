"""sprkd: Saddle Point Recruitment for Knowledge Distillation (docs/methods.md, "sprkd").

The student starts from its own seeded initialisation, approaches the teachers' Approximated Saddle
Region injected into its shapes, then trains with the base optimiser; where the gate opens (gate.py) it
takes a negative Hessian eigenstep (nhe.py) and a Gaussian perturbation (pgd.py). Its teachers are runs
of train-teacher --track-saddles (tracking.py keeps their saddle candidates; teachers.py picks each
teacher's strong saddle for the ASR). This module declares the options; method.py is the method.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import UserError
from ...options import above, at_least, option
from ..contract import MethodOptions
from .saddles import RULES as SADDLE_RULES

SPRKD_PANEL = "sprkd method"
GATE_PANEL = "sprkd's gate (when NHE and PGD may act)"
SADDLE_PANEL = "sprkd's strong saddles (applied to the teachers' stored candidates)"


@dataclass
class SPRKDOptions(MethodOptions):
    """sprkd's options. The defaults follow the reference implementation (docs/methods.md, "sprkd"); the
    paper-prose variants are choices: --nhe-step eigenvector, --pgd-noise relative, --accept probe-loss."""
    name = "sprkd"
    rank = 2
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

    @classmethod
    def load(cls):
        from .method import SPRKD

        return SPRKD

    def uses_teacher(self) -> bool:
        """The ASR reads the teachers' saddle snapshots, the KD term their outputs; without either, sprkd
        needs no teacher."""
        return self.asr or self.kd_weight > 0

    def choose_teachers(self, store, refs, dataset, split_seed, student):
        """As any method's, except that with the ASR every teacher must have stored saddle candidates, and the
        default teacher is the newest one with candidates whose parameter tensors fit the student."""
        from .teachers import latest_saddle_teacher, no_saddles_message

        if not refs:
            if self.asr:
                return [latest_saddle_teacher(store, dataset, split_seed, student).id]
            return super().choose_teachers(store, refs, dataset, split_seed, student)
        ids = list(dict.fromkeys(store.get_run(ref).id for ref in refs))  # kept even when nothing reads them
        for run_id in ids if self.asr else ():
            if not store.saddle_points(run_id):
                raise UserError(no_saddles_message(store, store.get_run(run_id)))
        return ids


OPTIONS = SPRKDOptions
