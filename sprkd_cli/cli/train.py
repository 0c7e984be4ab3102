"""train-teacher, distill and compare."""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import replace
from typing import Annotated, Optional

import typer

from ..choices import EXECUTORS
from ..config import TrainConfig
from ..methods import method_names
from . import arguments as arg
from .app import SprkdCommand, console, fmt, open_store_from, print_json, progress
from .derive import choice, command, method_params, method_values, training_params, training_values


def _config(kind: str, method: str, dataset: str, model: str, seed: int, values: dict, **fields) -> TrainConfig:
    """The run's TrainConfig from a command's parsed training flags (`values`), checked before any work."""
    if values.get("image_size") is None:  # the dataset's default size, stated, so that it hashes like --image-size N
        from ..data.source import DEFAULT_IMAGE_SIZE
        from ..specs import parse_spec

        values = values | {"image_size": DEFAULT_IMAGE_SIZE.get(parse_spec(dataset)[0])}
    cfg = TrainConfig(kind=kind, method=method, dataset=dataset, model=model, seed=seed, **training_values(values),
                      **fields)
    cfg.check()
    return cfg


def _train_and_report(ctx: typer.Context, cfg: TrainConfig, as_json: bool, reuse: bool) -> None:
    """Train `cfg`; with `reuse`, a finished run of it is reported instead, and one another process is
    training is waited for (services.training.train_once)."""
    from ..services.training import finished_outcome, reusable_run, train_once, train_run

    store = open_store_from(ctx)
    existing = reusable_run(store, cfg) if reuse else None
    if existing is not None:
        outcome = finished_outcome(existing) | {"reused": True}
        print_json(outcome) if as_json else _print_outcome(outcome)
        return
    if reuse:
        _with_progress(f"{cfg.kind} {cfg.method} seed {cfg.seed}", cfg.epochs, as_json,
                       lambda on_epoch, on_data: train_once(cfg, store, on_epoch, progress=on_data))
        return
    _with_progress(f"{cfg.kind} {cfg.method} seed {cfg.seed}", cfg.epochs, as_json,
                   lambda on_epoch, on_data: train_run(cfg, store, on_epoch, progress=on_data))


def _resume_and_report(ctx: typer.Context, kind: str, ref: str, as_json: bool) -> None:
    """--resume RUN: the run's stored configuration, so any other training option is refused."""
    from ..errors import UserError
    from ..services.training import resume_run

    # by name: Typer may bring its own copy of click's ParameterSource
    given = [name for name in ctx.params if name not in ("resume", "as_json")
             and getattr(ctx.get_parameter_source(name), "name", None) in ("COMMANDLINE", "ENVIRONMENT")]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UserError(f"--resume continues the run with its stored configuration; drop {flags}")
    store = open_store_from(ctx)
    run = store.get_run(ref)
    _with_progress(f"{run.kind} {run.method} seed {run.seed} (resumed)", run.config.get("epochs"), as_json,
                   lambda on_epoch, on_data: resume_run(run.id, store, on_epoch, kind=kind, progress=on_data))


def _with_progress(label: str, epochs: int | None, as_json: bool, train) -> None:
    """train(on_epoch, on_data) under a progress bar (epochs, and dataset decoding on first use); prints
    the outcome and exits 1 unless the run finished."""
    from ..activity import listening
    from ..services.training import set_threads

    set_threads(1)
    with progress(not as_json) as bar:
        task = bar.add_task(label, total=epochs, info="")
        last = [""]  # the latest epoch's numbers, shown again once an activity (a saddle check, ...) ends

        def on_epoch(record):
            last[0] = f"val_acc {record.metrics[('val', 'acc')]:.4f}"
            bar.update(task, completed=record.epoch, info=last[0])

        def on_activity(what):
            bar.update(task, info=f"{what}..." if what else last[0])

        decoding = []

        def on_data(what, done, total):
            if not decoding:
                decoding.append(bar.add_task(what, total=total, info=""))
            bar.update(decoding[0], completed=done)

        with listening(on_activity):
            outcome = train(on_epoch, on_data)
    if as_json:
        print_json(outcome)
    else:
        _print_outcome(outcome)
    if outcome["status"] != "finished":
        raise typer.Exit(1)


def _print_outcome(outcome: dict) -> None:
    out = console()
    if outcome["status"] != "finished":
        out.print(f"[red]run {outcome['run_id']} failed[/red]: {outcome['error']}")
        return
    out.print(
        f"run [bold]{outcome['run_id']}[/bold] {'reused' if outcome.get('reused') else 'finished'}: test_acc "
        f"{fmt(outcome['test_acc'])} "
        f"(at best val epoch {outcome['best_epoch']}, val_acc {fmt(outcome['best_val_acc'])}), "
        f"final test_acc {fmt(outcome['final_test_acc'])}, {outcome['n_params']:,} parameters, "
        f"{outcome['wall_seconds']:.1f}s"
    )
    for row in outcome.get("injection", []):
        out.print(f"  injected tensor {row['index']}: {row['teacher']} {tuple(row['teacher_shape'])} -> "
                  f"{row['student']} {tuple(row['student_shape'])} ({row['op']})")
    if outcome.get("events"):
        out.print("events: " + ", ".join(f"{k} {v}" for k, v in outcome["events"].items()))
    for warning in outcome.get("warnings", []):
        out.print(f"[yellow]warning:[/yellow] {warning}")


def _param(name: str, annotation, default) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


Model = Annotated[str, typer.Option(help="Teacher model, e.g. mlp-large, mlp:width=256,depth=3, cnn.")]
Method = Annotated[choice(tuple(method_names())), typer.Option(help=
    "Method: sgd (no teacher, the control), kd (Hinton), sprkd (saddle recruitment) or sage (synthetic embeddings; the "
    "student's embed width must be the teacher's).")]
Methods = Annotated[Optional[str], typer.Option(help=
    "Comma-separated methods, each an arm named after it, e.g. sgd,kd,sage \\[default: sgd,kd when no --arm is "
    "given].")]
ArmOption = Annotated[Optional[list[str]], typer.Option("--arm", metavar="NAME=METHOD[:key=value,...]", help=
    "An arm: a named method with its own options, e.g. rkd=kd:temperature=1,ce_weight=0,kd_weight=1 or "
    "sprkd-no-nhe=sprkd:nhe=false; teacher=RUN[+RUN] picks its teachers. Repeatable; a bare METHOD is an arm named "
    "after it. Its options override the flags below.")]
Seeds = Annotated[str, typer.Option(help="Seeds: a range 0-4, a list 0,2,7, or both.")]
Jobs = Annotated[int, typer.Option(help="Runs trained at once, each in its own process (with --executor ray and no "
                                        "--ray-address: the local Ray cluster's CPUs).")]
Executor = Annotated[choice(EXECUTORS), typer.Option(help=
    "Where the runs train: local (--jobs processes here) or ray (one Ray task per run; pip install 'sprkd\\[ray]').")]
HessianFlag = Annotated[bool, typer.Option("--hessian", help=
    "After the runs, a Hessian report (top 5 and bottom 1 eigenvalues, Hutch++ trace, on the run's own probe set) on "
    "the best-val weights of each finished run that has none; stored ones are reused (stats --metric hessian.top1, "
    "hessian.trace, hessian.min).")]
ConvergedAt = Annotated[Optional[float], typer.Option("--converged-at", metavar="X", help=
    "Add to the table, per arm, how many runs reached validation accuracy X and their Kaplan–Meier median epoch to it "
    "(a run that never did is censored at its last epoch; stats --metric epochs_to:X tests it).")]
TuneOption = Annotated[Optional[list[str]], typer.Option("--tune", metavar="KEY=V1,V2,...", help=
    "Tune an option per arm on validation before the seeds run, e.g. --tune lr=1e-3,3e-3,1e-2 --tune temperature=2,4,8 "
    "(any training or method option; repeatable: the grid is the product). Every arm runs the grid on --tune-seeds "
    "with the same budget (an arm that sets a key itself keeps its value); the point with the best mean validation "
    "accuracy (ties: lowest validation loss) is chosen, never looking at test. Grid runs are stored for the arm "
    "NAME:tune, which stats ignores.")]
TuneSeeds = Annotated[Optional[str], typer.Option(help=
    "Seeds of the --tune grid runs \\[default: the first of --seeds].")]
GpusPerRun = Annotated[float, typer.Option(metavar="G", help=
    "With --executor ray: the GPUs each run's task asks Ray for, e.g. 1, or 0.5 to put two runs on each GPU (above 1: "
    "whole GPUs); the runs then train on their GPU (--device auto). 0: the tasks hold no GPU and train on the CPU. A "
    "request no node of the cluster can meet is refused before any run starts.")]
RayVerbose = Annotated[bool, typer.Option("--verbose", help=
    "With --executor ray: let Ray's own log lines (connection retries, warnings) through to stderr; by default sprkd "
    "reports only its own errors and the runs' failures.")]
RayAddress = Annotated[Optional[str], typer.Option(help=
    "With --executor ray: the address of an existing Ray cluster (e.g. ray://head:10001 or auto); default: a local "
    "cluster started for this comparison.")]


def train_teacher(ctx: typer.Context, *, dataset: str, model: str, seed: int, resume: str | None, reuse: bool,
                  as_json: bool, **values) -> None:
    if resume is not None:
        return _resume_and_report(ctx, "teacher", resume, as_json)
    cfg = _config("teacher", "sgd", dataset, model, seed, values)
    _train_and_report(ctx, cfg, as_json, reuse)


def distill(ctx: typer.Context, *, method: str, teacher: str | None, student: str, dataset: str, seed: int,
            resume: str | None, reuse: bool, as_json: bool, **values) -> None:
    if resume is not None:
        return _resume_and_report(ctx, "student", resume, as_json)
    from ..arms import teacher_refs
    from ..methods import check_used, declared_options

    check_used([method], method_values(values))
    _check_teacher_used([method], teacher)
    cfg = _config("student", method, dataset, student, seed, values)
    options = declared_options(method, method_values(values))
    teachers = options.choose_teachers(open_store_from(ctx), teacher_refs(teacher), dataset, cfg.split_seed, student)
    _train_and_report(ctx, replace(cfg, teacher_ids=teachers, method_options=options.stored(cfg)), as_json, reuse)


def _check_teacher_used(methods: list[str], teacher: str | None) -> None:
    """--teacher given where no method of `methods` takes a teacher: it would do nothing."""
    from ..errors import UserError
    from ..methods import options_class

    if teacher is not None and methods and not any(options_class(m)().uses_teacher() for m in methods):
        raise UserError(f"--teacher: {', '.join(methods)} take{'s' if len(methods) == 1 else ''} no teacher (trained "
                        "on "
                        "the labels alone); drop --teacher")


def compare(ctx: typer.Context, *, methods: str | None, arm: list[str] | None, dataset: str, seeds: str,
            teacher: str | None, student: str, jobs: int, executor: str, ray_address: str | None,
            gpus_per_run: float, verbose: bool, hessian: bool, converged_at: float | None,
            tune: list[str] | None, tune_seeds: str | None, as_json: bool, **values) -> None:
    from ..arms import parse_arms, teacher_refs
    from ..errors import UserError
    from ..methods import check_used
    from ..services.compare import compare as run_compare
    from ..services.compare.executors import check_executor, check_jobs
    from ..specs import parse_seeds
    from ..tuning import check_training_grid, parse_tune

    arms = parse_arms(methods, arm or [])
    check_used(sorted({a.method for a in arms}), method_values(values))
    _check_teacher_used(sorted({a.method for a in arms if a.teachers is None}), teacher)
    seed_list = parse_seeds(seeds)
    check_jobs(jobs)
    check_executor(executor, ray_address, gpus_per_run, values.get("device") or "auto")
    tune_keys = parse_tune(tune or [])
    for key in tune_keys:
        if not key.training:
            check_used(sorted({a.method for a in arms}), {key.key: key.raw}, f"--tune {key.key}")
    tune_seed_list = parse_seeds(tune_seeds) if tune_seeds is not None else None
    if tune_seed_list is not None and not tune_keys:
        raise UserError("--tune-seeds goes with --tune")
    if converged_at is not None and not 0 < converged_at <= 1:
        raise UserError(f"bad --converged-at {converged_at:g}: give a validation accuracy in (0, 1]")
    template = _config("student", arms[0].method, dataset, student, 0, values)
    check_training_grid(template, tune_keys)
    teachers = teacher_refs(teacher)
    store = open_store_from(ctx)
    with progress(not as_json) as bar, _runs_in_flight(store, bar, enabled=not as_json):
        task = bar.add_task("runs", total=None, info="", plain_interval=0)  # in a log: a line per finished run

        def planned(phase, total, todo):
            bar.update(task, description=phase, total=todo, completed=0, info=f"({total - todo} of {total} reused)")

        def done(outcome):
            ended = f"test_acc {fmt(outcome.get('test_acc'))}" if outcome["status"] == "finished" else outcome["status"]
            bar.update(task, advance=1, info=f"(run {outcome['run_id']} {ended})")

        result = run_compare(store, template, arms, seed_list, teachers=teachers,
                             option_flags=method_values(values), jobs=jobs, on_planned=planned, on_done=done,
                             executor=executor, ray_address=ray_address, gpus_per_run=gpus_per_run,
                             ray_verbose=verbose, hessian=hessian, tune=tune_keys,
                             tune_seeds=tune_seed_list, converged_at=converged_at)
    if as_json:
        print_json(result)
    else:
        _print_compare(result)
    if result["failed"]:
        raise typer.Exit(1)


COMMON = [_param("dataset", arg.Dataset, arg.DEFAULT_DATASET)]
OUTPUT = [_param("as_json", arg.Json, False)]
RESUMABLE = [_param("resume", arg.Resume, None), _param("reuse", arg.Reuse, False), *OUTPUT]
STUDENT = [_param("teacher", arg.Teacher, None), _param("student", arg.Student, "mlp-small"), *COMMON]

COMMANDS = {
    "train-teacher": (train_teacher,
                      [*COMMON, _param("model", Model, "mlp-large"), _param("seed", arg.Seed, 0),
                       *training_params("teacher"), *RESUMABLE],
                      """Train a teacher on the labels and record it (metrics every epoch, checkpoint as an artifact);
    with --track-saddles, its strong saddle points too (for sprkd students). --resume RUN continues a
    stopped one."""),
    "distill": (distill,
                [_param("method", Method, "kd"), *STUDENT, _param("seed", arg.Seed, 0), *training_params("student"),
                 *method_params(), *RESUMABLE],
                "Train a student with one method and record it. --resume RUN continues a stopped one."),
    "compare": (compare,
                [_param("methods", Methods, None), _param("arm", ArmOption, None), *STUDENT,
                 _param("seeds", Seeds, "0-4"), _param("jobs", Jobs, 1), _param("executor", Executor, "local"),
                 _param("ray_address", RayAddress, None), _param("gpus_per_run", GpusPerRun, 0.0),
                 _param("verbose", RayVerbose, False), _param("hessian", HessianFlag, False),
                 _param("converged_at", ConvergedAt, None), _param("tune", TuneOption, None),
                 _param("tune_seeds", TuneSeeds, None),
                 *training_params("student"), *method_params(), *OUTPUT],
                """Run every missing (arm, seed) (finished runs with the same config and seed are reused;
    interrupted or crashed ones go on from their saved state), then print test accuracy at the
    best-validation epoch per arm and write a learning-curve PNG. Every distill flag is a compare flag
    (applied to every arm whose method has it); an --arm's own options override them."""),
}


def register(app: typer.Typer) -> None:
    for name, (body, params, doc) in COMMANDS.items():
        app.command(name, cls=SprkdCommand)(command(name, doc, params, body))


@contextmanager
def _runs_in_flight(store, bar, *, enabled: bool, every: float = 2.0):
    """While the block runs, a line under the bar for each run in progress (its arm, seed, epoch and
    validation accuracy), read from the store every `every` seconds (the runs may train in other processes);
    nothing when not `enabled` (--json)."""
    import threading

    if not enabled:
        yield
        return

    from ..services.compare.summary import in_flight
    from ..store import utcnow

    since, stop, tasks = utcnow(), threading.Event(), {}

    def poll():
        while not stop.wait(every):
            try:
                rows = in_flight(store, since)
            except Exception:  # a busy store: next time
                continue
            for row in rows:
                if row["run_id"] not in tasks:
                    label = f"  {'/'.join(row['arms'])} seed {row['seed']}"
                    tasks[row["run_id"]] = bar.add_task(label, total=row["epochs"], info="")
                acc = "" if row["val_acc"] is None else f"val_acc {row['val_acc']:.4f}"
                bar.update(tasks[row["run_id"]], completed=row["epoch"], info=acc)
            for run_id in set(tasks) - {row["run_id"] for row in rows}:
                bar.remove_task(tasks.pop(run_id))

    thread = threading.Thread(target=poll, daemon=True, name="sprkd-progress")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _reached(row: dict) -> str:
    median = row["epochs_to"]["median"]
    return f"{row['epochs_to']['reached']}/{row['n']} ({'not reached' if median is None else f'{median:g}'})"


def _print_compare(result: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    table = Table(title=f"{result['dataset']}: {result['student']} students, test accuracy at best-val epoch")
    tuned = any(row["tuning"] for row in result["arms"])
    converged = result.get("converged_at")
    reached = (f"reached {converged:g} (median)",) if converged is not None else ()
    columns = ("arm", "teacher", *(("tuned",) if tuned else ()), "n", "mean", "sd", "95% CI", "epochs", "plateau",
               *reached, "seeds")
    for column in columns:
        table.add_column(column, justify="left" if column in ("arm", "teacher", "tuned", "seeds") else "right")
    for row in result["arms"]:
        label = row["arm"] if row["arm"] == row["method"] and not row["options"] else f"{row['arm']} ({row['method']})"
        epochs = sorted(row["epochs_run"])
        span = "–" if not epochs else str(epochs[0]) if epochs[0] == epochs[-1] else f"{epochs[0]}-{epochs[-1]}"
        choice = [", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["tuned"].items())
                  or "–"] if tuned else []
        table.add_row(label, ",".join(row.get("teacher_ids", [])) or "–", *choice, str(row["n"]), fmt(row["mean"]),
                      fmt(row["sd"]), "no variation" if row.get("no_variation") else
                      f"[{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]", span,
                      f"{row['plateau']}/{row['n']}", *((_reached(row),) if reached else ()),
                      ",".join(map(str, row["seeds"])))
    out.print(table)
    resumed = f" ({len(result['resumed'])} of them resumed)" if result["resumed"] else ""
    grid = f" (+ {result['ran_tuning']} --tune grid run(s))" if result.get("ran_tuning") else ""
    out.print(f"{result['ran']} run(s) trained{grid}{resumed}, {result['reused']} reused; learning curves: "
              f"{result['plot']}")
    out.print("95% CI: the t interval of the mean, cut to [0, 1] (no variation: the runs' accuracies are equal to "
              "within half a test example); epochs: those each arm's runs trained; plateau: runs whose best-val epoch "
              "came --patience epochs (or, "
              "without it, a quarter of the epochs) before their last")
    if converged is not None:
        if result.get("km_plot"):
            out.print(f"Kaplan–Meier curves of epochs to {converged:g}: {result['km_plot']}")
        out.print(f"reached {converged:g}: runs whose validation accuracy reached {converged:g}, and the Kaplan–Meier "
                  "median epoch to it (a run that never did is censored at its last epoch; not reached: fewer than "
                  f"half got there); stats --metric epochs_to:{converged:g} tests it")
    if result["noise_added"]:
        out.print(f"--eval-noise measured on {len(result['noise_added'])} reused run(s)")
    if "hessian" in result:
        out.print(f"Hessian reports on best-val weights: {len(result['hessian']['made'])} made, "
                  f"{len(result['hessian']['reused'])} reused")
    for row in result["arms"]:
        if row["asr_fallback"]:
            out.print(f"[yellow]warning:[/yellow] arm {row['arm']}: in {row['asr_fallback']} of {row['n']} runs no "
                      "saddle "
                      "candidate of a teacher passed the rule, and a fallback candidate went into the ASR "
                      "(see --saddle-fallback, --saddle-rule, --saddle-beta, --saddle-alpha)")
    for row in result["arms"]:
        for point in (row["tuning"] or {}).get("failed", []):
            values = ", ".join(f"{k}={v}" for k, v in point.items())
            out.print(f"[yellow]note:[/yellow] arm {row['arm']}: --tune grid point {values} failed (diverged); not "
                      "chosen")
    for note in result["not_resumed"]:
        out.print(f"[yellow]{escape(note)}[/yellow]; trained afresh")
    for failure in result["failed"]:
        out.print(f"[red]run {failure['run_id']} failed[/red]: {failure['error']}")
