"""compare's numbers: per arm, test accuracy over its finished runs, what --tune chose and, with
--converged-at, epochs to a validation accuracy; and the runs in progress. No figures here: the
learning curves and Kaplan–Meier curves are drawn by services.figures."""

from __future__ import annotations

from ...arms import Arm
from ...config import TrainConfig
from ...store import Store
from .planner import PlannedRun

ACC_RANGE = (0.0, 1.0)


def arm_rows(store: Store, arms: list[Arm], planned: list[PlannedRun],
             tuning: dict[str, dict] | None = None) -> tuple[list[dict], dict[str, list[str]]]:
    """Per arm, a row: test accuracy at the best-validation epoch over its finished runs (its 95% CI the
    t interval cut to [0, 1]; no_variation: an sd below half a test example's step, 1/(2·n_test)), how
    many reached their plateau (selection.plateau_reached) and what --tune chose. With the rows, each
    arm's finished run ids, in seed order."""
    from ...selection import plateau_reached, plateau_window
    from ...stats import summarize
    from ...stats.summary import ci_method

    tuning = tuning or {}
    rows = []
    runs_by_arm: dict[str, list[str]] = {}
    for arm in arms:
        mine = [p for p in planned if p.arm == arm.name]
        runs = [store.get_run(p.run_id) for p in mine if p.run_id is not None]
        stats = summarize([r.summary["test_acc"] for r in runs], bounds=ACC_RANGE)
        n_test = max((r.config.get("data", {}).get("n_test") or 0 for r in runs), default=0)
        accs = [r.summary["test_acc"] for r in runs]
        flat = stats.n >= 2 and max(accs) - min(accs) <= (0.5 / n_test if n_test else 0.0)
        rows.append({"arm": arm.name, "method": arm.method, "options": arm.options, "n": stats.n, "mean": stats.mean,
                     "sd": stats.sd, "ci_low": stats.ci_low, "ci_high": stats.ci_high, "no_variation": flat,
                     "ci_method": ci_method(ACC_RANGE), "seeds": [r.seed for r in runs],
                     "run_ids": [r.id for r in runs], "teacher_ids": mine[0].config.teacher_ids if mine else [],
                     "best_val_accs": [r.summary["best_val_acc"] for r in runs],
                     "asr_fallback": sum(1 for r in runs if r.summary.get("asr_fallback")),
                     "epochs_run": [r.summary["epochs"] for r in runs],
                     "stopped_early": sum(1 for r in runs if r.summary.get("stopped_early")),
                     "plateau": sum(1 for r in runs if plateau_reached(
                         r.summary["best_epoch"], r.summary["epochs"], bool(r.summary.get("stopped_early")),
                         plateau_window(r.config.get("patience", 0), r.config["epochs"]))),
                     "tuned": tuning.get(arm.name, {}).get("chosen", {}), "tuning": tuning.get(arm.name)})
        runs_by_arm[arm.name] = [r.id for r in runs]
    return rows, runs_by_arm


def run_counts(template: TrainConfig, planned: list[PlannedRun], rows: list[dict], outcomes: list[dict],
                      converged_at: float | None) -> dict:
    """compare's result around the arms' rows: what it compared, and how many runs it trained, reused,
    resumed, could not resume, and which failed (the figures' paths are added by the caller)."""
    ran = sum(1 for o in outcomes if not o.get("reused"))  # a run another process trained meanwhile is reused
    first_teacher = next((p.config.teacher_ids[0] for p in planned if p.config.teacher_ids), None)
    return {"dataset": template.dataset, "student": template.model, "teacher": first_teacher, "metric": "test_acc",
            "at": "best-val", "converged_at": converged_at, "arms": rows, "ran": ran, "reused": len(planned) - ran,
            "resumed": [o["resumed"] for o in outcomes if "resumed" in o],
            "not_resumed": [o["resume_refused"] for o in outcomes if "resume_refused" in o],
            "failed": [o for o in outcomes if o["status"] != "finished"]}


def epochs_to_summary(store: Store, runs_by_arm: dict[str, list[str]], threshold: float) -> dict[str, dict]:
    """{arm: {"reached", "censored", "median", "ci_low", "ci_high", "curve"}}: epochs to validation accuracy
    `threshold` of the arm's runs as censored time-to-event data (stats.survival.kaplan_meier; None: not
    reached); "curve" is what services.figures.kaplan_meier_plot draws."""
    from ...stats import epochs_to
    from ...stats.survival import Censored, kaplan_meier

    ids = [rid for ids in runs_by_arm.values() for rid in ids]
    found = store.metric_curves(ids, "val", "acc") if ids else {}
    out = {}
    for arm, run_ids in runs_by_arm.items():
        values = []
        for rid in run_ids:
            curve = found.get(rid, [])
            first = epochs_to(curve, threshold)
            values.append(Censored(len(curve)) if first is None else first)
        km = kaplan_meier(values)
        finite = lambda x: None if x != x or x in (float("inf"), float("-inf")) else x  # noqa: E731
        out[arm] = {"threshold": threshold, "reached": km.reached, "censored": km.censored,
                    "median": finite(km.median), "ci_low": finite(km.ci_low), "ci_high": finite(km.ci_high),
                    "curve": (km.n, km.times, km.survival, max((v.at for v in values if isinstance(v, Censored)),
                                                               default=0))}
    return out


def in_flight(store: Store, since) -> list[dict]:
    """The runs running now that have shown life since `since` (a UTC time, as the store keeps them): per
    run its id, arms, seed, epochs done and planned, and latest validation accuracy (None before its first
    epoch). Read from the store, so it sees the runs of every executor (worker processes, Ray)."""
    runs = [r for r in store.list_runs(status="running") if (r.heartbeat_at or r.created_at) >= since]
    if not runs:
        return []
    arms = store.arms_of_runs([r.id for r in runs])
    latest: dict[str, dict] = {}
    for m in store.metrics([r.id for r in runs]):
        row = latest.setdefault(m.run_id, {"epoch": 0, "val_acc": None})
        row["epoch"] = max(row["epoch"], m.epoch)
        if m.split == "val" and m.name == "acc" and m.epoch >= row["epoch"]:
            row["val_acc"] = m.value
    return [{"run_id": r.id, "arms": arms.get(r.id, [r.method]), "seed": r.seed, "epochs": r.config.get("epochs"),
             **latest.get(r.id, {"epoch": 0, "val_acc": None})} for r in runs]
