"""Runs as the commands show them: a run described (runs show, list, export), and its metrics and Hessian
reports as rows."""

from __future__ import annotations

from ..arms import TEACHER, shown_method
from ..errors import UserError
from ..store import Store
from .events import event_counts
from .lifecycle import read_run, read_runs

RUN_FIELDS = ("id", "kind", "method", "dataset", "model", "seed", "status", "config_hash", "teacher_ids",
              "n_params", "device", "git_commit", "git_dirty", "created_at", "ended_at", "error")
SUMMARY_FIELDS = ("test_acc", "best_val_acc", "final_test_acc", "best_epoch", "epochs")
METRIC_FIELDS = ("run_id", "step", "epoch", "split", "name", "value")
# config keys that are columns of the run's row already, or say nothing about the experiment's settings
CONFIG_LEFT_OUT = ("kind", "method", "dataset", "model", "seed", "teacher_ids", "arm")


# -- describing runs ---------------------------------------------------------------------------------

def run_arms(run, arms: dict[str, list[str]]) -> list[str]:
    """The arms a run belongs to (`arms`: Store.arms_of_runs): a teacher's is "teacher", a student's with
    none recorded the one named after its method."""
    if run.kind == "teacher":
        return [TEACHER]
    return arms.get(run.id) or [run.method]


def run_row(run, arms: list[str] | None = None) -> dict:
    """A run's columns (RUN_FIELDS, its method as shown_method gives it), its arms, and the headline
    numbers of its summary (SUMMARY_FIELDS)."""
    row = {field: getattr(run, field) for field in RUN_FIELDS} | {"method": shown_method(run)}
    if arms is not None:
        row["arms"] = arms
    for key in SUMMARY_FIELDS:
        row[key] = run.summary.get(key)
    return row


def select_runs(store: Store, *, method: str | None = None, arm: str | None = None, kind: str | None = None,
                **filters) -> list:
    """read_runs with `method` as listings show it: "teacher" selects the teachers, any other method its
    students (not the teachers, which store the sgd they train with). `arm`: the runs of that arm ("teacher":
    the teachers)."""
    if TEACHER in (method, arm):
        if kind == "student" or (method not in (None, TEACHER)) or (arm not in (None, TEACHER)):
            return []
        return read_runs(store, kind=TEACHER, **filters)
    if method is not None or arm is not None:
        if kind == TEACHER:
            return []
        kind = "student"
    return read_runs(store, method=method, arm=arm, kind=kind, **filters)


def describe_run(store: Store, ref: str, *, events: bool = False) -> dict:
    """One run as `runs show` gives it: its row, config, provenance and summary, its metrics per epoch,
    Hessian reports, saddle points and event counts, and with `events` its event log."""
    run = read_run(store, ref)
    epochs: dict[int, dict] = {}
    for m in store.metrics([run.id]):
        epochs.setdefault(m.epoch, {"epoch": m.epoch, "step": m.step})[f"{m.split}_{m.name}"] = m.value
    document = run_row(run) | {"precision": run.config.get("precision"),
                               "config": run.config, "summary": run.summary, "versions": run.versions,
                               "artifact_dir": run.artifact_dir, "host": run.host, "pid": run.pid,
                               "started_at": run.started_at, "heartbeat_at": run.heartbeat_at,
                               "metrics": list(epochs.values()),
                               "hessian_reports": [_hessian_row(h) for h in store.hessian_reports(run.id)],
                               "saddle_points": [_saddle_row(p) for p in store.saddle_points(run.id)],
                               "event_counts": event_counts(store, run.id), "arms": store.arms_of(run.id),
                               "tuned": [e.payload for e in store.events(run.id) if e.kind == "tuned"]}
    if events:
        document["events"] = [{"id": e.id, "step": e.step, "epoch": e.epoch, "kind": e.kind, "payload": e.payload}
                              for e in store.events(run.id)]
    return document


def _saddle_row(point) -> dict:
    """A stored saddle candidate, and whether it passes each rule at its default (docs/methods.md, sprkd)."""
    from ..methods.sprkd import SPRKDOptions
    from ..methods.sprkd.saddles import SaddleScore, is_strong

    score = SaddleScore(list(point.eigenvalues), point.s_neg, point.s_pos)
    defaults = SPRKDOptions()
    passes = {rule: is_strong(score, rule, defaults.saddle_alpha, defaults.saddle_beta)
              for rule in ("ratio", "magnitude")}
    return {"saddle_id": point.id, "step": point.step, "epoch": point.epoch, "probe_loss": point.probe_loss,
            "eigenvalues": point.eigenvalues, "s_neg": point.s_neg, "s_pos": point.s_pos,
            "ratio": score.ratio if score.ratio != float("inf") else None, "passes_ratio": passes["ratio"],
            "passes_magnitude": passes["magnitude"], "artifact": point.artifact}


def _hessian_row(report) -> dict:
    result = report.result
    return {"report_id": report.id, "step": report.step, "top_eigenvalue": (result["top_eigenvalues"] or [None])[0],
            "bottom_eigenvalue": (result["bottom_eigenvalues"] or [None])[0], "trace": result["trace"],
            "trace_se": result["trace_se"], "n_hvp": report.n_hvp, "seconds": report.seconds}


def flat(prefix: str, value) -> dict:
    """A nested dict as one level of dotted keys ({"a": {"b": 1}} -> {"prefix.a.b": 1}); a list or tuple as
    its JSON text, so that every value is a scalar (a column pandas, CSV and Parquet take alike)."""
    import json

    if isinstance(value, dict):
        return {k: v for key, inner in value.items() for k, v in flat(f"{prefix}.{key}", inner).items()}
    if isinstance(value, (list, tuple)):
        return {prefix: json.dumps(value)}
    return {prefix: value}


def export_rows(store: Store, *, method: str | None = None, arm: str | None = None, dataset: str | None = None,
                status: str | None = None, kind: str | None = None) -> list[dict]:
    """One row per run and arm (a run reused by two arms is in both; a teacher's arm is "teacher"): the
    run's columns, its arm, every scalar of its summary (lists and dicts as JSON text; `summary.` before a
    name a run column has already), and its config flattened into `config.` columns."""
    runs = select_runs(store, method=method, arm=arm, dataset=dataset, status=status, kind=kind)
    arms = store.arms_of_runs([r.id for r in runs])
    rows = []
    for run in runs:
        base = {field: getattr(run, field) for field in RUN_FIELDS} | {"method": shown_method(run),
                                                                       "teacher_ids": ",".join(run.teacher_ids)}
        summary = {}
        for key, value in run.summary.items():
            summary |= flat(f"summary.{key}" if key in base or key == "arm" else key, value)
        config = {k: v for key, value in run.config.items() if key not in CONFIG_LEFT_OUT
                  for k, v in flat(f"config.{key}", value).items()}
        for name in run_arms(run, arms):
            if arm is None or name == arm:
                rows.append({"id": run.id, "arm": name} | base | summary | config)
    return rows


def metric_rows(store: Store, run_ids: list[str]) -> list[dict]:
    """Every metric row of the runs (long format: METRIC_FIELDS)."""
    return [{field: getattr(m, field) for field in METRIC_FIELDS} for m in store.metrics(run_ids)]


def hessian_rows(store: Store, run_ids: list[str]) -> list[dict]:
    """One row per stored Hessian report of the runs: what it was measured on (weights, probe set, mode,
    dtype; step None: after training) and what it measured (eigenvalues, trace, the SLQ density's nodes
    and weights when it has one, and the share of that density below zero)."""
    from .hessian import negative_mass

    rows = []
    for run_id in run_ids:
        for report in store.hessian_reports(run_id):
            request, result = report.config, report.result
            rows.append({"run_id": run_id, "report_id": report.id, "step": report.step,
                         "epoch": request.get("epoch"), "weights": request.get("weights"),
                         "probe_batches": request.get("probe_batches"), "probe_size": request.get("probe_size"),
                         "probe_seed": request.get("probe_seed"), "mode": request.get("mode"),
                         "dtype": request.get("dtype"), "layer": request.get("layer"),
                         "top_eigenvalue": (result["top_eigenvalues"] or [None])[0],
                         "bottom_eigenvalue": (result["bottom_eigenvalues"] or [None])[0],
                         "top_eigenvalues": result["top_eigenvalues"],
                         "bottom_eigenvalues": result["bottom_eigenvalues"],
                         "trace": result.get("trace"), "trace_se": result.get("trace_se"),
                         "negative_mass": negative_mass(result), "density_nodes": result.get("density_nodes"),
                         "density_weights": result.get("density_weights"), "dim": result.get("dim"),
                         "n_hvp": report.n_hvp, "seconds": report.seconds, "created_at": report.created_at})
    return rows


def check_filters(*, method: str | None = None, dataset: str | None = None, status: str | None = None,
                  kind: str | None = None) -> None:
    """UserError for a filter of `runs list`/`runs export` that names no known value (a misspelt name would
    otherwise match nothing and print an empty result): a method of the registry, a dataset of the
    registry (with or without options), a run status, a run kind."""
    from ..data import check_dataset_name
    from ..methods import options_class
    from ..store import RUN_KINDS, RUN_STATUSES

    for value, valid, flag in ((status, RUN_STATUSES, "--status"), (kind, RUN_KINDS, "--kind")):
        if value is not None and value not in valid:
            raise UserError(f"unknown {flag} '{value}'; valid: {', '.join(valid)}")
    if method is not None and method != "teacher":  # teachers are listed as method "teacher"
        options_class(method)
    if dataset is not None:
        check_dataset_name(dataset)
