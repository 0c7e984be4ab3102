"""Collect one value per (method, seed) from the store and run the statistics on them."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..store import Store
from .lifecycle import read_run

SPLITS = ("train", "val", "test")


def parse_metric(metric: str) -> tuple[str, str]:
    split, _, name = metric.partition("_")
    if split not in SPLITS or not name:
        raise UserError(f"bad --metric '{metric}': write SPLIT_NAME with SPLIT in train, val, test (e.g. test_acc, val_loss)")
    return split, name


def arm_list(store: Store, text: str | None) -> list[str]:
    """stats' --methods/--arms: comma-separated arm names (a method's name is the arm of its plain runs);
    each must be a method or an arm some run belongs to. Not given: every method and stored arm."""
    from ..methods import method_names
    from ..specs import parse_list

    known = list(dict.fromkeys([*method_names(), *store.arm_names()]))
    if text is None:
        return known
    names = parse_list(text)
    if not names:
        raise UserError(f"bad --methods '{text}': give comma-separated arms or methods, e.g. sgd,kd")
    for name in names:
        if name not in known:
            raise UserError(f"unknown arm or method '{name}'; valid: {', '.join(known)}")
    return names


def method_values(store: Store, dataset: str, methods: list[str], metric: str, at: str, *,
                  student: str | None = None, teacher: str | None = None) -> dict[str, dict[int, dict]]:
    """values[arm][seed] = {"value", "run_id"} from the latest finished student run of each (arm, seed); a
    method's name is the arm of its runs by `distill` (and of compare's arm named after it).

    `at` is best-val (the epoch of best validation accuracy; never chosen on test) or final."""
    if at not in ("best-val", "final"):
        raise UserError(f"bad --at '{at}': use best-val or final")
    split, name = parse_metric(metric)
    teacher_id = store.get_run(teacher).id if teacher else None
    chosen: dict[str, dict[int, object]] = {m: {} for m in methods}
    for method in methods:
        for run in store.list_runs(kind="student", arm=method, dataset=dataset, status="finished", model=student,
                                   brief=True):
            if teacher_id and run.teacher_ids and teacher_id not in run.teacher_ids:
                continue
            chosen[method].setdefault(run.seed, run)  # newest first: the latest run per seed wins
    runs = [r for per_seed in chosen.values() for r in per_seed.values()]
    epoch_of = {r.id: r.summary["best_epoch"] if at == "best-val" else r.summary["epochs"] for r in runs}
    found = store.metric_at(list(epoch_of.items()), split, name)
    values: dict[str, dict[int, dict]] = {}
    for method, per_seed in chosen.items():
        values[method] = {}
        for seed, run in sorted(per_seed.items()):
            epoch = epoch_of[run.id]
            if (run.id, epoch) not in found:
                raise UserError(f"run {run.id} has no metric {metric} at epoch {epoch}; valid: train_loss, val_loss, "
                                "val_acc, test_loss, test_acc")
            values[method][seed] = {"value": found[(run.id, epoch)], "run_id": run.id}
    return values


@dataclass(frozen=True)
class StatsRequest:
    """What `stats` compares. `methods` (arm names) empty: every arm with finished runs."""

    dataset: str
    metric: str
    at: str
    methods: tuple[str, ...] = ()
    student: str | None = None
    teacher: str | None = None

    @classmethod
    def parse(cls, methods: str | None, dataset: str, metric: str, at: str, *, student: str | None = None,
              teacher: str | None = None) -> "StatsRequest":
        """The request from the command line's values; the dataset and model are checked here, before a store
        is opened (arm names are checked against the store's arms, by method_stats)."""
        from ..data import check_dataset_name
        from ..specs import parse_list

        chosen = tuple(parse_list(methods)) if methods else ()
        if methods is not None and not chosen:
            raise UserError(f"bad --methods '{methods}': give comma-separated arms or methods, e.g. sgd,kd")
        check_dataset_name(dataset)
        if student:
            from ..models import check_model

            check_model(student)
        return cls(dataset, metric, at, chosen, student, teacher)


def method_stats(store: Store, request: StatsRequest) -> dict:
    """The pairwise tests of `request`'s arms (see pairwise). Without arms named: those with finished
    runs; with none at all, the plain methods (sgd, kd), which show their n = 0."""
    from ..methods import plain_methods

    arms = arm_list(store, ",".join(request.methods) if request.methods else None)
    values = method_values(store, request.dataset, arms, request.metric, request.at,
                           student=request.student, teacher=request.teacher)
    if not request.methods:
        values = ({arm: per_seed for arm, per_seed in values.items() if per_seed}
                  or {arm: values[arm] for arm in plain_methods()})
    return pairwise(values)


def pairwise(values: dict[str, dict[int, dict]]) -> dict:
    from ..stats import compare_methods, summarize

    plain = {m: {seed: v["value"] for seed, v in per_seed.items()} for m, per_seed in values.items()}
    arms = []
    for method, per_seed in plain.items():
        arm = summarize(list(per_seed.values())) if per_seed else None
        arms.append({"method": method, "n": len(per_seed), "mean": arm.mean if arm else None,
                     "sd": arm.sd if arm else None, "seeds": sorted(per_seed),
                     "run_ids": [values[method][s]["run_id"] for s in sorted(per_seed)]})
    return {"arms": arms, "pairs": [p.to_dict() for p in compare_methods(plain)]}


def mcnemar_runs(store: Store, ref_a: str, ref_b: str) -> dict:
    """McNemar's exact test on the stored test predictions of two runs, which must have been tested on
    the same examples (same dataset and split: the split fingerprints and the labels agree)."""
    from ..stats import mcnemar_exact

    run_a, run_b = read_run(store, ref_a), read_run(store, ref_b)
    if run_a.id == run_b.id:
        raise UserError(f"--mcnemar needs two different runs (both are {run_a.id})")
    rows = {}
    for run in (run_a, run_b):
        rows[run.id] = store.predictions(run.id, "test")
        if not rows[run.id]:
            raise UserError(f"run {run.id} ({run.status}) has no stored test predictions; McNemar needs finished runs")
    pa, pb = rows[run_a.id], rows[run_b.id]
    split_a, split_b = run_a.config.get("data", {}), run_b.config.get("data", {})
    if (run_a.dataset != run_b.dataset or split_a.get("fingerprint") != split_b.get("fingerprint") or len(pa) != len(pb)
            or any(x.label != y.label for x, y in zip(pa, pb))):
        raise UserError(
            f"runs {run_a.id} ({run_a.dataset}, split seed {split_a.get('split_seed')}, {len(pa)} test examples) and "
            f"{run_b.id} ({run_b.dataset}, split seed {split_b.get('split_seed')}, {len(pb)}) were not tested on the "
            "same examples; McNemar pairs predictions example by example: pick runs of one dataset and split seed")
    result = mcnemar_exact([p.predicted for p in pa], [p.predicted for p in pb], [p.label for p in pa])
    warnings = []
    if run_a.seed != run_b.seed:
        warnings.append(f"the runs have different seeds ({run_a.seed}, {run_b.seed}): the test compares these two "
                        "runs, and says nothing about seed-to-seed variation (use the t-tests for that)")
    return {"run_a": run_a.id, "run_b": run_b.id, "method_a": run_a.method, "method_b": run_b.method,
            "seed_a": run_a.seed, "seed_b": run_b.seed, "dataset": run_a.dataset, **result.to_dict(),
            "warnings": warnings}
