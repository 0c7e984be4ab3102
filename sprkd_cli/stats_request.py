"""stats' request, declared once: every field that is a flag carries its default and help (options.option), and
the command's flags derive from it (cli/derive.py). With the parsing of --metric, importable without torch,
numpy or the store, so that `sprkd --help` stays instant."""

from __future__ import annotations

from dataclasses import dataclass

from .choices import AT, CORRECTIONS, TESTS
from .errors import UserError
from .options import check_options, declared_fields, option

SPLITS = ("train", "val", "test")
HESSIAN_CLAIMS = ("top1", "trace", "min")
METRIC_FORMS = ("SPLIT_NAME (test_acc, test_loss, val_acc, val_loss, train_loss)", "epochs_to:X", "auc_val_acc",
                "val_loss_sd:K", "hessian.top1", "hessian.trace", "hessian.min", "noise_acc:S")


@dataclass(frozen=True)
class MetricSpec:
    """A parsed --metric. kind: split (a per-epoch value at --at), epochs_to (param: X), auc_val_acc,
    val_loss_sd (param: K), hessian (param: top1, trace or min) or noise_acc (param: S's key)."""

    text: str
    kind: str
    split: str | None = None
    name: str | None = None
    param: float | int | str | None = None


def parse_metric(metric: str) -> MetricSpec:
    from .config import noise_key

    bad = UserError(f"bad --metric '{metric}'; valid: {', '.join(METRIC_FORMS)}")
    head, colon, arg = metric.partition(":")
    if head in ("epochs_to", "val_loss_sd", "noise_acc"):
        try:
            value = int(arg) if head == "val_loss_sd" else float(arg)
        except ValueError:
            raise bad from None
        if head == "epochs_to" and not 0 < value <= 1:
            raise UserError(f"bad --metric '{metric}': epochs_to:X takes a validation accuracy X in (0, 1]")
        if head == "val_loss_sd" and value < 2:
            raise UserError(f"bad --metric '{metric}': val_loss_sd:K takes K >= 2 epochs (an sd of one value is 0)")
        if head == "noise_acc" and not (value >= 0 and value != float("inf")):
            raise UserError(f"bad --metric '{metric}': noise_acc:S takes a noise level S >= 0")
        return MetricSpec(metric, head, param=noise_key(value) if head == "noise_acc" else value)
    if colon:
        raise bad
    if metric == "auc_val_acc":
        return MetricSpec(metric, "auc_val_acc")
    if metric.startswith("hessian."):
        if metric.removeprefix("hessian.") not in HESSIAN_CLAIMS:
            raise bad
        return MetricSpec(metric, "hessian", param=metric.removeprefix("hessian."))
    split, _, name = metric.partition("_")
    if split not in SPLITS or not name:
        raise bad
    return MetricSpec(metric, "split", split, name)


METRIC_HELP = (
    "One value per run, tested across seeds. SPLIT_NAME: test_acc, test_loss, val_acc, val_loss, train_loss (at "
    "--at's epoch). The claims (docs/methods.md): epochs_to:X, the first epoch whose val accuracy is >= X (runs that "
    "never get there are censored at their last epoch and tested as time-to-event data: Kaplan–Meier median, log-rank "
    "test); auc_val_acc, the mean val accuracy over the "
    "run's epochs; val_loss_sd:K, the sd of val loss over the last K epochs (with the Brown–Forsythe test); "
    "hessian.top1, hessian.trace, hessian.min: largest eigenvalue, trace and smallest eigenvalue of the run's "
    "stored Hessian report on its own probe set and --at weights (compare --hessian or hessian-report --weights "
    "... --trace makes it); noise_acc:S, test accuracy with Gaussian noise of sd S x each feature's training sd "
    "on the test inputs (a fixed draw), stored by --eval-noise S.")


@dataclass(frozen=True)
class StatsRequest:
    """What `stats` compares. `methods` (arm names) empty: every arm with finished runs. Every test of the
    call (all metrics, all pairs) is one family for `correction`. The dataset is the command's --dataset
    (cli/arguments.py, shared with train and report)."""

    dataset: str
    methods: tuple[str, ...] = option(
        (), "Comma-separated arms to compare pairwise: compare's arm names, or methods (the arm of a method's plain "
            "runs) (default: every arm with finished runs).", flag="--methods", names=("--arms",), sep=",")
    metrics: tuple[str, ...] = option(
        ("test_acc",), METRIC_HELP + " Repeat --metric to test several in one call: one table each, and every test "
                                     "of the call one family for --correction.", flag="--metric")
    at: str = option("best-val", "The weights the value is of: best-val (the epoch of best validation accuracy) or "
                                 "final. The curve metrics (epochs_to, auc_val_acc, val_loss_sd) are of the whole run.",
                     choices=AT)
    # stats --test: t (Welch's and the paired t-test), rank (Mann–Whitney and Wilcoxon's signed-rank test), aso
    # (Almost Stochastic Order: ε_min both ways)
    test: str = option("t", "t: Welch's t-test and the paired t-test (with Cohen's d, d_z and the CI of the "
                            "difference); rank: the Mann–Whitney U test and Wilcoxon's signed-rank test (paired), "
                            "exact p without ties; aso: Almost Stochastic Order, ε_min of each pair both ways (below "
                            "0.5: one arm's values almost stochastically larger), Bonferroni-adjusted over the call's "
                            "pairs. epochs_to:X always gets the log-rank test and a paired signed-rank test (censored "
                            "runs ranked slowest).", choices=TESTS)
    correction: str = option("holm", "Multiple-testing adjustment across every test of the call (all metrics and "
                                     "pairs; unpaired and paired p-values each a family): holm, bonferroni or none.",
                             choices=CORRECTIONS)
    # the Brown–Forsythe test too (always with val_loss_sd:K)
    spread: bool = option(False, "Add the Brown–Forsythe test of equal variances between arms (scipy.stats.levene, "
                                 "median-centred), adjusted with the call's --correction; always on with "
                                 "val_loss_sd:K.")
    student: str | None = option(None, "Only students of this model.")
    teacher: str | None = option(None, "Only students of this teacher run (sgd runs have none and stay in).")

    @property
    def metric(self) -> str:
        return self.metrics[0]

    @classmethod
    def parse(cls, dataset: str, **given) -> StatsRequest:
        """The request from the command line's values: `given` by field name, --methods as its comma-separated
        text and metrics as one text or several; one left out or None (not given) is the declared default. The
        dataset and model are checked here, before a store is opened (arm names are checked against the
        store's arms, by services.analysis.method_stats)."""
        from .data import check_dataset_name
        from .specs import parse_list

        unknown = set(given) - {f.name for f, _ in declared_fields(cls)}
        if unknown:
            raise TypeError(f"StatsRequest.parse: no option {', '.join(sorted(unknown))}")
        values = {name: value for name, value in given.items() if value is not None}
        if "methods" in values:
            text = values["methods"]
            values["methods"] = tuple(parse_list(text))
            if not values["methods"]:
                raise UserError(f"bad --methods '{text}': give comma-separated arms or methods, e.g. sgd,kd")
        check_dataset_name(dataset)
        if values.get("student"):
            from .models import check_model

            check_model(values["student"])
        metrics = values.pop("metrics", ())
        metrics = tuple(dict.fromkeys([metrics] if isinstance(metrics, str) else metrics))
        request = cls(dataset, **values, **({"metrics": metrics} if metrics else {}))
        for one in request.metrics:
            parse_metric(one)
        check_options(request)
        return request
