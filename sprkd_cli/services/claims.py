"""The claims a run is measured on (docs/methods.md: the claims as metrics), stored with the run.

Where each lives:
- auc_val_acc and noise_acc:S are keys of the run's summary (JSON), written when it finishes:
  `auc_val_acc`, `noise_acc:S` (best-val weights) and `final_noise_acc:S` (final weights), like
  `test_acc` and `final_test_acc`. `compare --eval-noise` adds the levels a reused run lacks from its
  stored checkpoints.
- hessian.top1/trace/min are read from the run's stored Hessian report on its own probe set and on the
  weights asked for (`compare --hessian`, `hessian-report --weights`): see claim_report.
- epochs_to:X and val_loss_sd:K take a parameter any value of which may be asked, so `stats` reads
  them off the stored per-epoch curve (services.analysis)."""

from __future__ import annotations

from ..config import TrainConfig, noise_key, noise_levels
from ..store import Store

NOISE_SEED = 0  # one fixed draw of noise for every run, so arms are compared on the same perturbed inputs


def noisy(x_test, x_train, level: float, seed: int = NOISE_SEED):
    """x_test + level · sd · z: z standard normal from a generator seeded with `seed` (drawn on the CPU,
    so every device sees the same numbers), sd each input feature's population sd over the training set."""
    import torch

    if not torch.is_floating_point(x_test):
        raise ValueError("noise is added to floating-point input features, not to token ids")
    sd = x_train.double().std(dim=0, correction=0).to(x_test.dtype)
    z = torch.randn(x_test.shape, generator=torch.Generator().manual_seed(seed), dtype=x_test.dtype)
    return x_test + (level * sd) * z.to(x_test.device)


def noise_accuracies(model, data, levels: list[float], precision: str = "fp32") -> dict[str, float]:
    """{level key: test accuracy of `model` on the noisy test inputs} (engine.evaluate: eval mode, in the
    run's --precision)."""
    from ..engine.loop import evaluate

    return {noise_key(level): evaluate(model, noisy(data.x_test, data.x_train, level), data.y_test, precision)[1]
            for level in levels}


def end_of_run_claims(cfg: TrainConfig, result, model, data) -> dict:
    """The summary keys of a run that just finished: auc_val_acc, and noise_acc:S / final_noise_acc:S for
    each --eval-noise level, on the best-val weights (result.best_state) and the final ones (`model`)."""
    import copy

    from ..stats import auc_val_acc

    claims = {"auc_val_acc": auc_val_acc([r.metrics[("val", "acc")] for r in result.history])}
    levels = noise_levels(cfg.eval_noise) if cfg.eval_noise else []
    if levels:
        best = copy.deepcopy(model)
        best.load_state_dict(result.best_state)
        claims |= _noise_keys(noise_accuracies(best, data, levels, cfg.precision),
                              noise_accuracies(model, data, levels, cfg.precision))
    return claims


def _noise_keys(best: dict[str, float], final: dict[str, float]) -> dict:
    return {f"noise_acc:{k}": v for k, v in best.items()} | {f"final_noise_acc:{k}": v for k, v in final.items()}


def add_noise_claims(store: Store, run, levels: list[float]) -> bool:
    """Measure the --eval-noise levels `run` (finished) has not measured, from its stored checkpoints, and
    add them to its summary. True when it measured any."""
    from .loading import BEST_CHECKPOINT, FINAL_CHECKPOINT, load_config_data, load_run_model

    missing = [level for level in levels if f"noise_acc:{noise_key(level)}" not in run.summary]
    if not missing:
        return False
    cfg = TrainConfig.from_dict(run.config)
    data = load_config_data(cfg, store)
    found = _noise_keys(noise_accuracies(load_run_model(run, BEST_CHECKPOINT), data, missing, cfg.precision),
                        noise_accuracies(load_run_model(run, FINAL_CHECKPOINT), data, missing, cfg.precision))
    store.update_run(run.id, summary=run.summary | found)
    return True


# -- Hessian claims ----------------------------------------------------------------------------------
def claim_report(store: Store, run, weights: str):
    """The latest stored Hessian report of `run` usable for hessian.top1/trace/min on `weights`: made after
    training (no step), on those weights, on the run's own probe set (its probe seed, batches, size and
    mode), all parameters, with a trace and top and bottom eigenvalues. None when there is none."""
    reports = store.hessian_reports(run.id)
    cfg = TrainConfig.from_dict(run.config) if reports else None
    for report in reversed(reports):
        c, r = report.config, report.result
        if (report.step is None and c.get("weights") == weights and c.get("probe_seed") is None
                and c.get("layer") is None and c.get("probe_batches") == cfg.probe_batches
                and c.get("probe_size") == cfg.probe_size and c.get("mode") == cfg.probe_mode
                and r.get("trace") is not None and r.get("top_eigenvalues") and r.get("bottom_eigenvalues")):
            return report
    return None


def hessian_claims(report) -> dict[str, float]:
    """hessian.top1 (largest eigenvalue), hessian.trace and hessian.min (smallest eigenvalue) of a report."""
    r = report.result
    return {"top1": r["top_eigenvalues"][0], "trace": r["trace"], "min": r["bottom_eigenvalues"][0]}


def ensure_hessian_reports(store: Store, run_ids: list[str], weights: str = "best-val") -> dict:
    """compare --hessian: for each finished run without a claim report on `weights`, make one (the default
    report: top 5 and bottom 1 eigenvalues, Hutch++ trace, on the run's own probe set); stored ones are
    reused. Returns {"made": [run ids], "reused": [run ids]}."""
    from .hessian import HessianRequest, report_run

    made, reused = [], []
    for run_id in run_ids:
        run = store.get_run(run_id)
        if run.status != "finished":
            continue
        if claim_report(store, run, weights) is not None:
            reused.append(run.id)
            continue
        report_run(store, run.id, HessianRequest(trace=True, weights=weights))
        made.append(run.id)
    return {"made": made, "reused": reused}
