"""hessian-report's request, declared once: every field that is a flag carries its default, help and
choices (options.option), and the command's flags derive from it (cli/derive.py). Importable without
torch or the store, so that `sprkd --help` stays instant."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from .choices import DTYPES, HVP_KINDS, MODES, TRACE_METHODS, WEIGHTS
from .config import TrainConfig
from .errors import UserError
from .options import option

PROBE = "Probe set"
ESTIMATORS = "Estimators"


def _runs_own(flag: str, name: str) -> str:
    """'[default: the run's own --probe-size, 256 unless it was given]': TrainConfig's default of `name`."""
    default = next(f.default for f in fields(TrainConfig) if f.name == name)
    return f"[default: the run's own {flag}, {default} unless it was given]"


@dataclass
class HessianRequest:
    """What to measure and on what: stored with the report. A field left None is the run's own (its --probe-*
    settings; the probe seed: the run's seed, so every report of a run sees the same data)."""

    top_k: int = option(5, "Largest (algebraic) eigenvalues.", panel=ESTIMATORS)
    bottom_k: int = option(1, "Smallest (algebraic) eigenvalues: negative ones show saddles.", panel=ESTIMATORS)
    trace: bool = option(False, "Estimate the trace (Hutch++ by default).", panel=ESTIMATORS)
    trace_method: str = option("hutchpp", "Trace estimator: Hutch++ or Hutchinson's.", panel=ESTIMATORS,
                               choices=TRACE_METHODS)
    trace_hvp: int = option(99, "HVPs the trace estimate may spend.", panel=ESTIMATORS)
    density: bool = option(False, "Eigenvalue density by stochastic Lanczos quadrature; writes a PNG.",
                           panel=ESTIMATORS)
    slq_runs: int = option(10, "SLQ random starts.", panel=ESTIMATORS)
    slq_steps: int = option(80, "Lanczos steps per SLQ start.", panel=ESTIMATORS)
    probe_batches: int | None = option(
        None, f"Batches in the probe set {_runs_own('--probe-batches', 'probe_batches')}.", panel=PROBE)
    probe_size: int | None = option(
        None, f"Examples per probe batch {_runs_own('--probe-size', 'probe_size')}.", panel=PROBE)
    probe_seed: int | None = option(
        None, "Draw another probe set [default: the run's seed, i.e. the run's own probe set].", panel=PROBE)
    mode: str | None = option(
        None, f"Model mode during the probe (restored after) {_runs_own('--probe-mode', 'probe_mode')}.",
        panel=PROBE, choices=MODES)
    # the run's own --probe-micro-batch when None (0: from the model's size); its flag is TrainConfig's
    micro_batch: int | None = None
    dtype: str = option("float32", "Precision of the Hessian-vector products.", panel=PROBE, choices=DTYPES)
    hvp: str = option("auto", "How Hessian-vector products are made: func (forward-over-reverse), double (double "
                              "backward) or auto (times both, keeps the faster that works).",
                      panel=PROBE, choices=HVP_KINDS)
    seed: int = option(0, "Seed of the random vectors only (Lanczos start, trace and SLQ probes).", panel=PROBE)
    layer: str | None = option(None, "Only the parameters of this module, e.g. embed.1 or body.", panel=PROBE)
    weights: str = option("final", "The run's final weights, or best-val: those whose accuracy it reports (what "
                                   "stats --metric hessian.* reads at --at best-val).", panel=PROBE, choices=WEIGHTS)

    def for_run(self, cfg) -> HessianRequest:
        """The request with what it leaves open taken from the run's configuration: its probe set."""
        return replace(self, probe_batches=cfg.probe_batches if self.probe_batches is None else self.probe_batches,
                       probe_size=cfg.probe_size if self.probe_size is None else self.probe_size,
                       mode=cfg.probe_mode if self.mode is None else self.mode,
                       micro_batch=cfg.probe_micro_batch if self.micro_batch is None else self.micro_batch)

    def validate(self) -> None:
        for value, valid, flag in ((self.dtype, DTYPES, "--dtype"), (self.mode, MODES, "--mode"),
                                   (self.weights, WEIGHTS, "--weights"), (self.hvp, HVP_KINDS, "--hvp"),
                                   (self.trace_method, TRACE_METHODS, "--trace-method")):
            if value not in valid:
                raise UserError(f"bad {flag} '{value}'; valid: {', '.join(valid)}")
        if self.top_k < 0 or self.bottom_k < 0 or self.top_k + self.bottom_k == 0:
            raise UserError("ask for at least one eigenvalue: --top-k and --bottom-k are >= 0, not both 0")
        if self.micro_batch is not None and self.micro_batch < 0:
            raise UserError(f"--probe-micro-batch must be >= 0 (got {self.micro_batch})")
        if (self.probe_batches < 1 or self.probe_size < 1 or self.slq_runs < 1 or self.slq_steps < 2
                or self.trace_hvp < 5):
            raise UserError("--probe-batches, --probe-size, --slq-runs must be >= 1, "
                            "--slq-steps >= 2, --trace-hvp >= 5")
