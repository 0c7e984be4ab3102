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
    if extra.get("image_size") is None:  # the dataset's default size, stated, so that it hashes like --image-size N
        from ..data.source import DEFAULT_IMAGE_SIZE
        from ..specs import parse_spec

        extra["image_size"] = DEFAULT_IMAGE_SIZE.get(parse_spec(dataset)[0])
    return TrainConfig(kind=kind, method=method, dataset=dataset, model=model, seed=seed, split_seed=split_seed,
                       epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                       momentum=momentum, schedule=schedule, teacher_ids=teacher_ids, method_options=method_options,
                       **extra)


def _train_and_report(ctx: typer.Context, cfg: TrainConfig, as_json: bool, reuse: bool) -> None:
    from ..services.saddles import same_tracking
    from ..services.training import finished_outcome, train_run

    store = open_store_from(ctx)
    existing = store.find_finished(cfg.config_hash(), cfg.seed) if reuse else None
    if existing is not None and not same_tracking(existing, cfg):
        existing = None  # the same teacher, but without the saddles asked for
    if existing is not None:
        outcome = finished_outcome(existing) | {"reused": True}
        print_json(outcome) if as_json else _print_outcome(outcome)
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
    from ..services.training import set_threads

    set_threads(1)
    with progress(not as_json) as bar:
        task = bar.add_task(label, total=epochs, info="")

        def on_epoch(record):
            bar.update(task, completed=record.epoch, info=f"val_acc {record.metrics[('val', 'acc')]:.4f}")

        decoding = []

        def on_data(what, done, total):
            if not decoding:
                decoding.append(bar.add_task(what, total=total, info=""))
            bar.update(decoding[0], completed=done)

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
        f"run [bold]{outcome['run_id']}[/bold] {'reused' if outcome.get('reused') else 'finished'}: test_acc {fmt(outcome['test_acc'])} "
        f"(at best val epoch {outcome['best_epoch']}, val_acc {fmt(outcome['best_val_acc'])}), "
        f"final test_acc {fmt(outcome['final_test_acc'])}, {outcome['n_params']:,} parameters, "
        f"{outcome['wall_seconds']:.1f}s"
    )
    for row in outcome.get("injection", []):
        out.print(f"  injected tensor {row['index']}: {row['teacher']} {tuple(row['teacher_shape'])} -> "
                  f"{row['student']} {tuple(row['student_shape'])} ({row['op']})")
    if outcome.get("events"):
        out.print("events: " + ", ".join(f"{k} {v}" for k, v in outcome["events"].items()))


def register(app: typer.Typer) -> None:
    app.command("train-teacher")(train_teacher)
    app.command("distill")(distill)
    app.command("compare")(compare)


def train_teacher(
    ctx: typer.Context,
    dataset: o.Dataset = "digits",
    data_dir: o.DataDir = None,
    image_size: o.ImageSize = None,
    download: o.Download = False,
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
    augment: o.Augment = False,
    device: o.Device = "auto",
    hessian_every: o.HessianEvery = 0,
    hessian_density: o.HessianDensity = False,
    track_saddles: o.TrackSaddles = False,
    saddle_every: o.SaddleEvery = 50,
    saddle_top_n: o.SaddleTopN = 4,
    saddle_rule: o.SaddleRule = "ratio",
    saddle_alpha: o.SaddleAlpha = 0.4,
    saddle_beta: o.SaddleBeta = 7.0,
    max_saddles: o.MaxSaddles = 20,
    probe_batches: o.ProbeBatches = 2,
    probe_size: o.ProbeSize = 256,
    probe_mode: o.ProbeMode = "eval",
    checkpoint_every: o.CheckpointEvery = 60.0,
    resume: o.Resume = None,
    reuse: o.Reuse = False,
    as_json: o.Json = False,
) -> None:
    """Train a teacher on the labels and record it (metrics every epoch, checkpoint as an artifact);
    with --track-saddles, its strong saddle points too (for sprkd students). --resume RUN continues a
    stopped one."""
    if resume is not None:
        return _resume_and_report(ctx, "teacher", resume, as_json)
    cfg = _config("teacher", "sgd", dataset, model, seed, split_seed, epochs, batch_size, optimizer, lr,
                  weight_decay, momentum, schedule, [], {}, data_dir=data_dir, image_size=image_size,
                  download=download, augment=augment, device=device,
                  hessian_every=hessian_every, hessian_density=hessian_density, track_saddles=track_saddles, saddle_every=saddle_every,
                  saddle_top_n=saddle_top_n, saddle_rule=saddle_rule, saddle_alpha=saddle_alpha,
                  saddle_beta=saddle_beta, max_saddles=max_saddles, probe_batches=probe_batches,
                  probe_size=probe_size, probe_mode=probe_mode, checkpoint_every=checkpoint_every)
    _train_and_report(ctx, cfg, as_json, reuse)


def distill(
    ctx: typer.Context,
    method: Annotated[str, typer.Option(help="Method: sgd (no teacher, the control), kd (Hinton), sprkd (saddle recruitment) or sage (synthetic embeddings; the student's embed width must be the teacher's).")] = "kd",
    teacher: Annotated[Optional[str], typer.Option(help="Teacher run id (or unique prefix), several comma-separated for sprkd's ensemble; default: the latest finished teacher of the dataset (for sprkd: with tracked saddles).")] = None,
    student: Annotated[str, typer.Option(help="Student model, e.g. mlp-small.")] = "mlp-small",
    dataset: o.Dataset = "digits",
    data_dir: o.DataDir = None,
    image_size: o.ImageSize = None,
    download: o.Download = False,
    seed: Annotated[int, typer.Option(help="Seed of initialisation and data order.")] = 0,
    split_seed: o.SplitSeed = 0,
    epochs: o.Epochs = 30,
    batch_size: o.BatchSize = 64,
    optimizer: o.Optimizer = "adamw",
    lr: o.Lr = 1e-3,
    weight_decay: o.WeightDecay = 0.01,
    momentum: o.Momentum = 0.9,
    schedule: o.Schedule = "cosine",
    augment: o.Augment = False,
    device: o.Device = "auto",
    temperature: o.Temperature = None,
    ce_weight: o.CeWeight = None,
    kd_weight: o.KdWeight = None,
    hessian_every: o.HessianEvery = 0,
    hessian_density: o.HessianDensity = False,
    no_asr: o.NoAsr = False,
    no_nhe: o.NoNhe = False,
    no_pgd: o.NoPgd = False,
    asr_pick: o.AsrPick = None,
    approach_eps: o.ApproachEps = None,
    approach_max_steps: o.ApproachMaxSteps = None,
    nhe_grad_threshold: o.NheGradThreshold = None,
    nhe_max: o.NheMax = None,
    nhe_tol: o.NheTol = None,
    nhe_scale: o.NheScale = None,
    pgd_epochs: o.PgdEpochs = None,
    pgd_sigma: o.PgdSigma = None,
    cooldown: o.Cooldown = None,
    sage_rounds: o.SageRounds = None,
    sage_every: o.SageEvery = None,
    sage_umap_max: o.SageUmapMax = None,
    sage_percentile: o.SagePercentile = None,
    sage_per_anchor: o.SagePerAnchor = None,
    sage_k: o.SageK = None,
    sage_synth: o.SageSynth = None,
    sage_max_synth: o.SageMaxSynth = None,
    probe_batches: o.ProbeBatches = 2,
    probe_size: o.ProbeSize = 256,
    probe_mode: o.ProbeMode = "eval",
    checkpoint_every: o.CheckpointEvery = 60.0,
    resume: o.Resume = None,
    reuse: o.Reuse = False,
    as_json: o.Json = False,
) -> None:
    """Train a student with one method and record it. --resume RUN continues a stopped one."""
    if resume is not None:
        return _resume_and_report(ctx, "student", resume, as_json)
    from ..methods import method_options
    from ..services.saddles import teacher_ids_for

    options = method_options(method, {
        "temperature": temperature, "ce_weight": ce_weight, "kd_weight": kd_weight,
        "asr": False if no_asr else None, "nhe": False if no_nhe else None, "pgd": False if no_pgd else None,
        "asr_pick": asr_pick, "approach_eps": approach_eps, "approach_max_steps": approach_max_steps,
        "nhe_grad_threshold": nhe_grad_threshold, "nhe_max": nhe_max, "nhe_tol": nhe_tol, "nhe_scale": nhe_scale,
        "pgd_epochs": pgd_epochs, "pgd_sigma": pgd_sigma, "cooldown": cooldown,
        "probe_batches": probe_batches, "probe_size": probe_size, "probe_mode": probe_mode,
        "sage_rounds": sage_rounds, "sage_every": sage_every, "sage_umap_max": sage_umap_max,
        "sage_percentile": sage_percentile, "sage_per_anchor": sage_per_anchor, "sage_k": sage_k,
        "sage_synth": sage_synth, "sage_max_synth": sage_max_synth})
    teachers = teacher_ids_for(open_store_from(ctx), method, teacher, dataset, split_seed, student, options)
    cfg = _config("student", method, dataset, student, seed, split_seed, epochs, batch_size, optimizer, lr,
                  weight_decay, momentum, schedule, teachers, options, data_dir=data_dir, image_size=image_size,
                  download=download, augment=augment, device=device,
                  hessian_every=hessian_every,
                  hessian_density=hessian_density, probe_batches=probe_batches, probe_size=probe_size,
                  probe_mode=probe_mode, checkpoint_every=checkpoint_every)
    _train_and_report(ctx, cfg, as_json, reuse)


def compare(
    ctx: typer.Context,
    methods: Annotated[Optional[str], typer.Option(help="Comma-separated methods, e.g. sgd,kd,sage \\[default: sgd,kd].")] = None,
    dataset: o.Dataset = "digits",
    data_dir: o.DataDir = None,
    image_size: o.ImageSize = None,
    download: o.Download = False,
    seeds: Annotated[str, typer.Option(help="Seeds: a range 0-4, a list 0,2,7, or both.")] = "0-4",
    teacher: Annotated[Optional[str], typer.Option(help="Teacher run; default: the latest finished teacher of the dataset.")] = None,
    student: Annotated[str, typer.Option(help="Student model.")] = "mlp-small",
    jobs: Annotated[int, typer.Option(help="Runs trained at once, each in its own process (with --executor ray and no --ray-address: the local Ray cluster's CPUs).")] = 1,
    executor: Annotated[str, typer.Option(help="Where the runs train: local (--jobs processes here) or ray (one Ray task per run; pip install 'sprkd\\[ray]').")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(help="With --executor ray: the address of an existing Ray cluster (e.g. ray://head:10001 or auto); default: a local cluster started for this comparison.")] = None,
    split_seed: o.SplitSeed = 0,
    epochs: o.Epochs = 30,
    batch_size: o.BatchSize = 64,
    optimizer: o.Optimizer = "adamw",
    lr: o.Lr = 1e-3,
    weight_decay: o.WeightDecay = 0.01,
    momentum: o.Momentum = 0.9,
    schedule: o.Schedule = "cosine",
    augment: o.Augment = False,
    device: o.Device = "auto",
    temperature: o.Temperature = None,
    ce_weight: o.CeWeight = None,
    kd_weight: o.KdWeight = None,
    sage_rounds: o.SageRounds = None,
    sage_every: o.SageEvery = None,
    sage_umap_max: o.SageUmapMax = None,
    sage_percentile: o.SagePercentile = None,
    sage_per_anchor: o.SagePerAnchor = None,
    sage_k: o.SageK = None,
    sage_synth: o.SageSynth = None,
    sage_max_synth: o.SageMaxSynth = None,
    as_json: o.Json = False,
) -> None:
    """Run every missing (method, seed) (finished runs with the same config and seed are reused;
    interrupted or crashed ones go on from their saved state), then print test accuracy at the
    best-validation epoch per method and write a learning-curve PNG."""
    from ..methods import parse_methods
    from ..services.compare import check_executor, check_jobs, compare as run_compare
    from ..specs import parse_seeds

    method_list = parse_methods(methods)
    seed_list = parse_seeds(seeds)
    check_jobs(jobs)
    check_executor(executor, ray_address)
    template = _config("student", method_list[0], dataset, student, 0, split_seed, epochs, batch_size, optimizer,
                       lr, weight_decay, momentum, schedule, [], {}, data_dir=data_dir, image_size=image_size,
                       download=download, augment=augment, device=device)
    store = open_store_from(ctx)
    overrides = {"temperature": temperature, "ce_weight": ce_weight, "kd_weight": kd_weight,
                 "sage_rounds": sage_rounds, "sage_every": sage_every, "sage_umap_max": sage_umap_max,
                 "sage_percentile": sage_percentile, "sage_per_anchor": sage_per_anchor, "sage_k": sage_k,
                 "sage_synth": sage_synth, "sage_max_synth": sage_max_synth}
    with progress(not as_json) as bar:
        task = bar.add_task("runs", total=None, info="")

        def planned(total, todo):
            bar.update(task, total=todo, info=f"{total - todo} of {total} reused")

        def done(outcome):
            bar.update(task, advance=1)

        result = run_compare(store, template, method_list, seed_list, teacher_ref=teacher,
                             method_overrides=overrides, jobs=jobs, on_planned=planned, on_done=done,
                             executor=executor, ray_address=ray_address)
    if as_json:
        print_json(result)
    else:
        _print_compare(result)
    if result["failed"]:
        raise typer.Exit(1)


def _print_compare(result: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    table = Table(title=f"{result['dataset']}: {result['student']} students, test accuracy at best-val epoch")
    for column in ("method", "teacher", "n", "mean", "sd", "95% CI", "seeds"):
        table.add_column(column, justify="left" if column in ("method", "teacher", "seeds") else "right")
    for row in result["methods"]:
        table.add_row(row["method"], ",".join(row.get("teacher_ids", [])) or "–", str(row["n"]), fmt(row["mean"]),
                      fmt(row["sd"]), f"[{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]", ",".join(map(str, row["seeds"])))
    out.print(table)
    resumed = f" ({len(result['resumed'])} of them resumed)" if result["resumed"] else ""
    out.print(f"{result['ran']} run(s) trained{resumed}, {result['reused']} reused; learning curves: {result['plot']}")
    for note in result["not_resumed"]:
        out.print(f"[yellow]{escape(note)}[/yellow]; trained afresh")
    for failure in result["failed"]:
        out.print(f"[red]run {failure['run_id']} failed[/red]: {failure['error']}")
