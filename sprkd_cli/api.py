"""The result store as pandas DataFrames, for notebooks and scripts.

    from sprkd_cli.api import load_runs, load_metrics, load_hessian

    runs = load_runs("runs.db", dataset="digits", status="finished")
    runs.pivot_table(index="arm", values="test_acc", aggfunc=["mean", "std", "count"])
    curves = load_metrics("runs.db", dataset="digits").merge(runs[["id", "arm"]], left_on="run_id", right_on="id")
    curves.query("split == 'val' and name == 'acc'").groupby(["arm", "epoch"]).value.mean().unstack(0)

`db` is what `sprkd --db` takes (a SQLite file path or a SQLAlchemy URL; None: $SPRKD_DB, else ./runs.db)
or an open store. The filters are those of `sprkd runs export`: `method` and `arm` as the listings show
them ("teacher" for the teachers), `dataset`, `status` (running, finished, failed, interrupted, crashed)
and `kind` (teacher, student).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from .store import Store

__all__ = ["load_runs", "load_metrics", "load_hessian", "write_frame"]


def _store(db: "str | Store | None") -> "Store":
    from .store import Store, open_store

    return db if isinstance(db, Store) else open_store(None if db is None else str(db))


def load_runs(db: "str | Store | None" = None, *, dataset: str | None = None, method: str | None = None,
              arm: str | None = None, status: str | None = None, kind: str | None = None) -> "pd.DataFrame":
    """One row per run and arm, newest run first: a run that two arms share (compare reused it) is a row of
    each, so grouping by `arm` never mixes arms, and a teacher is a row of the arm "teacher".

    Columns: id, arm, the run's own (kind, method, dataset, model, seed, status, config_hash, teacher_ids
    comma-joined, n_params, device, git_commit, git_dirty, created_at, ended_at, error), every number of its
    summary (test_acc at the best-validation epoch, best_val_acc, final_test_acc, best_epoch, epochs,
    wall_seconds, the claims such as noise_acc:S, ...), and its configuration flattened into config.*
    columns (config.lr, config.method_options.temperature, config.data.n_classes, ...). Lists are JSON text.
    """
    import pandas as pd

    from .services.runs import export_rows

    rows = export_rows(_store(db), method=method, arm=arm, dataset=dataset, status=status, kind=kind)
    front = ["id", "arm"]
    columns = front + [c for c in dict.fromkeys(k for row in rows for k in row) if c not in front]
    frame = pd.DataFrame(rows, columns=columns)
    object_columns = [c for c in frame.columns if pd.api.types.is_object_dtype(frame[c])]
    for column in object_columns:  # a key some runs lack: None, as Parquet reads it back
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame


def load_metrics(db: "str | Store | None" = None, *, run_ids: list[str] | None = None,
                 **filters: Any) -> "pd.DataFrame":
    """Every metric row of the runs (given by id, else those load_runs(**filters) selects), long format:
    run_id, step, epoch, split (train, val, test), name (loss, acc, ...), value. Join with load_runs on
    run_id = id for the arm."""
    import pandas as pd

    from .services.runs import METRIC_FIELDS, metric_rows, select_runs

    store = _store(db)
    ids = list(run_ids) if run_ids is not None else [r.id for r in select_runs(store, **filters)]
    return pd.DataFrame(metric_rows(store, ids), columns=list(METRIC_FIELDS))


def load_hessian(db: "str | Store | None" = None, *, run_ids: list[str] | None = None,
                 **filters: Any) -> "pd.DataFrame":
    """One row per stored Hessian report of the runs (given by id, else those load_runs(**filters) selects):
    run_id, report_id, step (None: after training) and epoch, weights (final or best-val), the probe set
    (probe_batches, probe_size, probe_seed; None: the run's own), mode, dtype, layer; top_eigenvalue,
    bottom_eigenvalue and the lists top_eigenvalues, bottom_eigenvalues; trace and trace_se (None without a
    trace); negative_mass, density_nodes and density_weights (None without a density); dim, n_hvp,
    seconds, created_at."""
    import pandas as pd

    from .services.runs import hessian_rows, select_runs

    store = _store(db)
    ids = list(run_ids) if run_ids is not None else [r.id for r in select_runs(store, **filters)]
    return pd.DataFrame(hessian_rows(store, ids))


def write_frame(frame: "pd.DataFrame", path, fmt: str) -> None:
    """`frame` as csv, json (records, ISO dates) or parquet at `path` (a file path, or a binary/text stream
    for csv and json)."""
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "json":
        frame.to_json(path, orient="records", date_format="iso", indent=1)
    elif fmt == "parquet":
        parquet_ready(frame).to_parquet(path, index=False)
    else:
        raise ValueError(f"unknown format {fmt!r}")


def parquet_ready(frame: "pd.DataFrame") -> "pd.DataFrame":
    """`frame` with each column of mixed Python types (a config key that is a number in one run and text in
    another) as text, which Parquet's one type per column needs; other columns as they are."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            kinds = {type(v) for v in out[column] if v is not None and v == v}
            if len(kinds) > 1 and not kinds <= {int, float}:
                out[column] = [None if v is None or v != v else str(v) for v in out[column]]
    return out
