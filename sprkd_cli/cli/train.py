"""train-teacher, distill and compare."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..config import TrainConfig
from . import options as o
from .app import console, fmt, open_store_from, print_json, progress


def _config(kind: str, method: str, dataset: str, model: str, seed: int, split_seed: int, epochs: int,
            batch_size: int, optimizer: str, lr: float, weight_decay: float, momentum: float, schedule: str,
            teacher_ids: list[str], method_options: dict, **extra) -> TrainConfig:
    """The run's TrainConfig; `extra` are further TrainConfig fields (e.g. hessian_every)."""
    from ..errors import UserError

    if optimizer not in ("adamw", "adam", "sgd"):
        raise UserError(f"unknown optimizer '{optimizer}'; valid optimizers: adam, adamw, sgd")
    if schedule not in ("cosine", "constant"):
        raise UserError(f"unknown schedule '{schedule}'; valid schedules: constant, cosine")
    return TrainConfig(kind=kind, method=method, dataset=dataset, model=model, seed=seed, split_seed=split_seed,
                       epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                       momentum=momentum, schedule=schedule, teacher_ids=teacher_ids, method_options=method_options,
                       **extra)


def _train_and_report(ctx: typer.Context, cfg: TrainConfig, as_json: bool, reuse: bool) -> None:
    from ..services.training import finished_outcome, set_threads, train_run

    store = open_store_from(ctx)
    existing = store.find_finished(cfg.config_hash(), cfg.seed) if reuse else None
    if existing is not None:
        outcome = finished_outcome(existing) | {"reused": True}
        print_json(outcome) if as_json else _print_outcome(outcome)
        return
    set_threads(1)
    with progress(not as_json) as bar:
        task = bar.add_task(f"{cfg.kind} {cfg.method} seed {cfg.seed}", total=cfg.epochs, info="")

        def on_epoch(record):
            bar.update(task, advance=1, info=f"val_acc {record.metrics[('val', 'acc')]:.4f}")

        outcome = train_run(cfg, store, on_epoch)
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
        f"run [bold]{outcome['run_id']}[/bold] {'reused' if outcome.get('reused') else 'finished'}: test_acc {fmt(outcome['test_acc'])} "
        f"(at best val epoch {outcome['best_epoch']}, val_acc {fmt(outcome['best_val_acc'])}), "
        f"final test_acc {fmt(outcome['final_test_acc'])}, {outcome['n_params']:,} parameters, "
        f"{outcome['wall_seconds']:.1f}s"
    )


def register(app: typer.Typer) -> None:
    app.command("train-teacher")(train_teacher)
    app.command("distill")(distill)
    app.command("compare")(compare)


def train_teacher(
    ctx: typer.Context,
    dataset: o.Dataset = "digits",
    model: Annotated[str, typer.Option(help="Teacher model, e.g. mlp-large, mlp:width=256,depth=3, cnn.")] = "mlp-large",
    seed: Annotated[int, typer.Option(help="Seed of initialisation and data order.")] = 0,
    split_seed: o.SplitSeed = 0,
    epochs: o.Epochs = 30,
    batch_size: o.BatchSize = 64,
    optimizer: o.Optimizer = "adamw",
    lr: o.Lr = 1e-3,
    weight_decay: o.WeightDecay = 0.01,
    momentum: o.Momentum = 0.9,
    schedule: o.Schedule = "cosine",
    hessian_every: o.HessianEvery = 0,
    hessian_density: o.HessianDensity = False,
    reuse: o.Reuse = False,
    as_json: o.Json = False,
) -> None:
    """Train a teacher on the labels and record it (metrics every epoch, checkpoint as an artifact)."""
    cfg = _config("teacher", "sgd", dataset, model, seed, split_seed, epochs, batch_size, optimizer, lr,
                  weight_decay, momentum, schedule, [], {}, hessian_every=hessian_every,
                  hessian_density=hessian_density)
    _train_and_report(ctx, cfg, as_json, reuse)


def distill(
    ctx: typer.Context,
    method: Annotated[str, typer.Option(help="Method: sgd (no teacher, the control) or kd (Hinton).")] = "kd",
    teacher: Annotated[Optional[str], typer.Option(help="Teacher run id (or unique prefix); default: the latest finished teacher of the dataset.")] = None,
    student: Annotated[str, typer.Option(help="Student model, e.g. mlp-small.")] = "mlp-small",
    dataset: o.Dataset = "digits",
    seed: Annotated[int, typer.Option(help="Seed of initialisation and data order.")] = 0,
    split_seed: o.SplitSeed = 0,
    epochs: o.Epochs = 30,
    batch_size: o.BatchSize = 64,
    optimizer: o.Optimizer = "adamw",
    lr: o.Lr = 1e-3,
    weight_decay: o.WeightDecay = 0.01,
    momentum: o.Momentum = 0.9,
    schedule: o.Schedule = "cosine",
    temperature: o.Temperature = None,
    ce_weight: o.CeWeight = None,
    kd_weight: o.KdWeight = None,
    hessian_every: o.HessianEvery = 0,
    hessian_density: o.HessianDensity = False,
    reuse: o.Reuse = False,
    as_json: o.Json = False,
) -> None:
    """Train a student with one method and record it."""
    from ..methods import method_class, method_options
    from ..services.teachers import latest_teacher

    options = method_options(method, {"temperature": temperature, "ce_weight": ce_weight, "kd_weight": kd_weight})
    teachers: list[str] = []
    if method_class(method).needs_teacher:
        store = open_store_from(ctx)
        ref = teacher or latest_teacher(store, dataset, split_seed).id
        teachers = [store.get_run(ref).id]
    cfg = _config("student", method, dataset, student, seed, split_seed, epochs, batch_size, optimizer, lr,
                  weight_decay, momentum, schedule, teachers, options, hessian_every=hessian_every,
                  hessian_density=hessian_density)
    _train_and_report(ctx, cfg, as_json, reuse)


def compare(
    ctx: typer.Context,
    methods: Annotated[Optional[str], typer.Option(help="Comma-separated methods [default: all: sgd,kd].")] = None,
    dataset: o.Dataset = "digits",
    seeds: Annotated[str, typer.Option(help="Seeds: a range 0-4, a list 0,2,7, or both.")] = "0-4",
    teacher: Annotated[Optional[str], typer.Option(help="Teacher run; default: the latest finished teacher of the dataset.")] = None,
    student: Annotated[str, typer.Option(help="Student model.")] = "mlp-small",
    jobs: Annotated[int, typer.Option(help="Runs trained at once, each in its own process.")] = 1,
    split_seed: o.SplitSeed = 0,
    epochs: o.Epochs = 30,
    batch_size: o.BatchSize = 64,
    optimizer: o.Optimizer = "adamw",
    lr: o.Lr = 1e-3,
    weight_decay: o.WeightDecay = 0.01,
    momentum: o.Momentum = 0.9,
    schedule: o.Schedule = "cosine",
    temperature: o.Temperature = None,
    ce_weight: o.CeWeight = None,
    kd_weight: o.KdWeight = None,
    as_json: o.Json = False,
) -> None:
    """Run every missing (method, seed) (finished runs with the same config and seed are reused), then
    print test accuracy at the best-validation epoch per method and write a learning-curve PNG."""
    from ..methods import parse_methods
    from ..services.compare import check_jobs, compare as run_compare
    from ..specs import parse_seeds

    method_list = parse_methods(methods)
    seed_list = parse_seeds(seeds)
    check_jobs(jobs)
    template = _config("student", method_list[0], dataset, student, 0, split_seed, epochs, batch_size, optimizer,
                       lr, weight_decay, momentum, schedule, [], {})
    store = open_store_from(ctx)
    overrides = {"temperature": temperature, "ce_weight": ce_weight, "kd_weight": kd_weight}
    with progress(not as_json) as bar:
        task = bar.add_task("runs", total=None, info="")

        def planned(total, todo):
            bar.update(task, total=todo, info=f"{total - todo} of {total} reused")

        def done(outcome):
            bar.update(task, advance=1)

        result = run_compare(store, template, method_list, seed_list, teacher_ref=teacher,
                             method_overrides=overrides, jobs=jobs, on_planned=planned, on_done=done)
    if as_json:
        print_json(result)
    else:
        _print_compare(result)
    if result["failed"]:
        raise typer.Exit(1)


def _print_compare(result: dict) -> None:
    from rich.table import Table

    out = console()
    table = Table(title=f"{result['dataset']}: {result['student']} students, test accuracy at best-val epoch"
                        + (f", teacher {result['teacher']}" if result["teacher"] else ""))
    for column in ("method", "n", "mean", "sd", "95% CI", "seeds"):
        table.add_column(column, justify="left" if column in ("method", "seeds") else "right")
    for row in result["methods"]:
        table.add_row(row["method"], str(row["n"]), fmt(row["mean"]), fmt(row["sd"]),
                      f"[{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]", ",".join(map(str, row["seeds"])))
    out.print(table)
    out.print(f"{result['ran']} run(s) trained, {result['reused']} reused; learning curves: {result['plot']}")
    for failure in result["failed"]:
        out.print(f"[red]run {failure['run_id']} failed[/red]: {failure['error']}")
