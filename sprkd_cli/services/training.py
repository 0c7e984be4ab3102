"""Train one run (teacher or student), recording it in the store as it goes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict

import torch

from ..config import TrainConfig
from ..errors import Diverged, Interrupted, UserError, one_line
from ..store import RunTaken, Store, utcnow
from ..store import artifacts as store_artifacts
from .events import RunEvents, event_counts, injection_mapping
from .lifecycle import Heartbeat, Interruptible, died_here, read_run, this_process
from .loading import BEST_CHECKPOINT, FINAL_CHECKPOINT, load_config_data, load_run_model, resolve_teacher

STATE_FILE = "resume.safetensors"  # in the run's artifact folder: the latest training state, until it finishes


def prepare(cfg: TrainConfig, store: Store, emit: Callable | None = None, *, progress: Callable | None = None):
    """Everything a run needs, validated before its row is written: data, teacher runs, model, method
    (prepared from its context and set up, its events going to `emit`), on the run's device.
    `progress(what, done, total)` hears how decoding a dataset goes."""
    from ..engine import seed_everything
    from ..engine.device import resolve_device
    from ..engine.precision import check_precision
    from ..methods import options_class
    from ..methods.contract import MethodContext
    from ..models import build_model, check_model

    options = options_class(cfg.method).from_stored(cfg.method_options)
    method_cls = options.load()  # `cfg` was checked where it was made (the command's edge)
    check_model(cfg.model)
    device = resolve_device(cfg.device)
    check_precision(cfg.precision, device)
    data = load_config_data(cfg, store, download=cfg.download, progress=progress)
    if options.uses_teacher() and not cfg.teacher_ids:
        raise UserError(f"method {cfg.method} needs a teacher: pass --teacher RUN")
    if cfg.augment and len(data.input_shape) != 3:
        raise UserError(f"--augment crops and flips images; {cfg.dataset} gives inputs of shape {data.input_shape}")
    teacher_runs = [resolve_teacher(store, ref, data) for ref in cfg.teacher_ids]
    context = MethodContext(config=cfg, options=options, data=data, device=device, store=store,
                            teacher_runs=teacher_runs, load_model=load_run_model)
    method = method_cls.prepare(context)
    seed_everything(cfg.seed)
    model = build_model(cfg.model, data.input_shape, data.n_classes).to(device)
    method.setup(model, seed=cfg.seed, emit=emit or (lambda *args, **kwargs: None))
    return data, model, method


def reusable_run(store: Store, cfg: TrainConfig):
    """A finished run of the same experiment and seed that `cfg` can take as its own (--reuse): for a
    teacher asked to track saddles, one that tracked them as asked."""
    from ..config import same_tracking

    existing = store.find_finished(cfg.config_hash(), cfg.seed)
    return existing if existing is not None and same_tracking(existing, cfg) else None


def train_run(cfg: TrainConfig, store: Store, on_epoch: Callable | None = None, *,
              progress: Callable | None = None, exclusive: bool = False) -> dict:
    """Train and record one run. Returns its outcome (run id, status, headline numbers).
    `progress(what, done, total)` hears how decoding the dataset goes (image sets, first use).
    While it trains, a heartbeat thread marks the run alive; SIGINT or SIGTERM end it as interrupted
    (at the next step or epoch end) and raise Interrupted. `exclusive`: the run reserves its experiment
    (config hash and seed) as it starts, and RunTaken is raised instead when a finished or live run of
    it exists (see train_once)."""
    store.check_artifact_root()
    blocks = takes_experiment(cfg) if exclusive else None
    if blocks is not None and (taken := store.taken_by(cfg.config_hash(), cfg.seed, blocks)) is not None:
        raise RunTaken(taken)  # before the data and models are loaded; create_run checks again, atomically
    events = RunEvents()
    data, model, method = prepare(cfg, store, events, progress=progress)
    with Interruptible(defer=True) as stop:
        return _record_run(cfg, store, on_epoch, events, data, model, method, stop, blocks)


def _record_run(cfg: TrainConfig, store: Store, on_epoch: Callable | None, events, data, model, method,
                stop: Interruptible, blocks: Callable | None = None) -> dict:
    from ..provenance import provenance

    config = cfg.to_dict() | {"data": data.describe()}
    run = store.create_run(
        kind=cfg.kind, method=cfg.method, dataset=cfg.dataset, model=cfg.model, seed=cfg.seed, config=config,
        config_hash=cfg.config_hash(), teacher_ids=cfg.teacher_ids, provenance=provenance(),
        device=str(next(model.parameters()).device), process=this_process(), arm=cfg.arm, blocks=blocks,
    )
    return _ended(store, run.id, lambda: _fit_and_finish(cfg, store, run, on_epoch, events, data, model, method, stop))


def _ended(store: Store, run_id: str, train: Callable[[], dict]) -> dict:
    """train(), with the run ended in the store however it ends: failed (diverged: an outcome, anything
    else: raised again) or interrupted (raised again, naming the run)."""
    try:
        return train()
    except Diverged as exc:
        store.fail_run(run_id, f"diverged: {exc}")
        return {"run_id": run_id, "status": "failed", "error": f"diverged: {exc}", "step": exc.step, "epoch": exc.epoch}
    except Interrupted as exc:
        store.interrupt_run(run_id, str(exc))
        exc.run_id = run_id
        raise
    except KeyboardInterrupt:  # raised into the run from outside (a cancelled Ray task), not a signal we noted
        store.interrupt_run(run_id, "interrupted (KeyboardInterrupt)")
        raise
    except BaseException as exc:
        try:
            store.fail_run(run_id, one_line(exc))
        except Exception:  # the store itself failed (locked, damaged): the run reads as crashed once we are gone
            pass
        raise


# -- --resume ----------------------------------------------------------------------------------------
RESUMABLE = ("interrupted", "crashed", "failed")


def resume_run(ref: str, store: Store, on_epoch: Callable | None = None, *, kind: str | None = None,
               progress: Callable | None = None, exclusive: bool = False) -> dict:
    """Continue an interrupted, crashed or failed run from its last saved training state (from its start
    when none was saved yet), under the same run id and with its stored configuration. What it recorded
    after that state is deleted first, so the run ends with exactly the rows and numbers of one never
    stopped. `kind` (teacher/student), when given, must be the run's."""
    from ..engine.state import load_state

    run = read_run(store, ref)
    check_resumable(run, kind)
    store.check_artifact_root()
    cfg = TrainConfig.from_dict(run.config)
    path = store_artifacts.join(store_artifacts.location(run.artifact_dir), STATE_FILE)
    state = load_state(path) if store_artifacts.exists(path) else None
    epoch, step = (state["epoch"], state["step"]) if state else (0, 0)
    if cfg.track_saddles:
        _check_saddles_kept(store, run, step)
    events = RunEvents()
    data, model, method = prepare(cfg, store, events, progress=progress)
    events.discard()  # setup's events were recorded when the run started
    if data.describe() != run.config.get("data", data.describe()):
        raise UserError(f"run {run.id} was trained on other data ({run.config['data']}, now {data.describe()}); "
                        "its dataset files changed, so it cannot be resumed")
    if state is not None:
        from ..engine.checkpoint import check_fits

        try:
            check_fits(model, state["model"], f"the saved training state {path}")
            method.check_state(state["method"])
        except UserError as exc:
            raise UserError(f"run {run.id} cannot be resumed: {exc}") from None
    with Interruptible(defer=True) as stop:
        blocks = takes_experiment(cfg) if exclusive else None
        for artifact in store.reopen_run(run, epoch, step, this_process(), blocks):
            store_artifacts.remove(store_artifacts.location(artifact))
        store.add_event(run.id, "resumed", {"from_epoch": epoch, "from_step": step, "was": run.status,
                                            "state": str(path) if state else None}, step=step, epoch=epoch)
        return _ended(store, run.id, lambda: _fit_and_finish(cfg, store, run, on_epoch, events, data, model, method,
                                                             stop, resume=state))


def train_or_resume(cfg: TrainConfig, store: Store, resume_id: str | None = None) -> dict:
    """compare's unit of work: go on with `resume_id` (an interrupted or crashed run of `cfg`) from its
    saved state, or train `cfg` afresh when there is none or it cannot be resumed (the outcome then says
    why under `resume_refused`); never a second run of an experiment another process has finished or is
    training (see train_once)."""
    return train_once(cfg, store, resume_id=resume_id)


# How often a process waiting for another's run of the same experiment looks at it again.
WAIT_POLL_SECONDS = 2.0


def takes_experiment(cfg: TrainConfig) -> Callable:
    """Whether a stored run (finished or running, of cfg's config hash and seed) takes the experiment, so
    that `cfg` is not trained again: a finished one, or a running one whose process is alive (a dead
    one's is taken over), that tracked saddles as cfg asks."""
    from ..config import same_tracking
    from .lifecycle import died_here, is_crashed

    def blocks(run) -> bool:
        if not same_tracking(run, cfg):
            return False
        return run.status == "finished" or not (is_crashed(run) or died_here(run))

    return blocks


def train_once(cfg: TrainConfig, store: Store, on_epoch: Callable | None = None, *, resume_id: str | None = None,
               progress: Callable | None = None, say: Callable[[str], None] | None = None) -> dict:
    """Train `cfg` (or resume `resume_id`) unless its experiment (config hash and seed) is taken: the run
    reserves it as it starts, atomically. An interrupted or crashed run of it is resumed (taken over), a
    finished one is reused (outcome `reused`); a run of it
    that another live process trains is waited for (`say` hears which, once), then reused when it
    finishes, resumed when it stopped (interrupted, or its process died), and trained again here when it
    failed other than by diverging (a diverged one is the outcome: it would diverge again)."""
    from .lifecycle import find_unfinished

    say = say or _to_stderr
    waited_for = None
    if resume_id is None:  # a run of it whose process died is taken over
        unfinished = find_unfinished(store, cfg.config_hash(), cfg.seed)
        resume_id = unfinished.id if unfinished is not None else None
    while True:
        try:
            if resume_id is None:
                return train_run(cfg, store, on_epoch, progress=progress, exclusive=True)
            try:
                resumed = resume_run(resume_id, store, on_epoch, progress=progress, exclusive=True)
                return dict(resumed, resumed=resume_id)
            except UserError as exc:
                return dict(train_run(cfg, store, on_epoch, progress=progress, exclusive=True),
                            resume_refused=f"run {resume_id} not resumed: {exc}")
        except RunTaken as taken:
            run = taken.run
            if run.status == "running":
                if waited_for != run.id:
                    say(f"{cfg.kind} {cfg.method} seed {cfg.seed}: waiting for run {run.id} (pid {run.pid} on "
                        f"{run.host}), which trains the same config and seed")
                    waited_for = run.id
                run = _wait_for(store, run, takes_experiment(cfg))
        if run.status == "finished":
            outcome = finished_outcome(run) | {"reused": True}
            return outcome | {"waited_for": waited_for} if waited_for else outcome
        if run.status == "failed" and (run.error or "").startswith("diverged"):
            return {"run_id": run.id, "status": "failed", "error": run.error, "reused": True}
        unfinished = find_unfinished(store, cfg.config_hash(), cfg.seed)
        resume_id = unfinished.id if unfinished is not None else None


def _wait_for(store: Store, run, blocks: Callable):
    """`run` as read once it no longer takes its experiment (it ended, or its process died)."""
    while True:
        time.sleep(WAIT_POLL_SECONDS)
        run = read_run(store, run.id)
        if run.status != "running" or not blocks(run):
            return run


def _to_stderr(line: str) -> None:
    import sys

    print(line, file=sys.stderr, flush=True)


def check_resumable(run, kind: str | None = None) -> None:
    if kind is not None and run.kind != kind:
        command = "train-teacher" if run.kind == "teacher" else "distill"
        raise UserError(f"run {run.id} is a {run.kind} run; resume it with `sprkd {command} --resume {run.id}`")
    if run.status == "finished":
        raise UserError(f"run {run.id} finished; there is nothing to resume")
    if run.status == "failed" and (run.error or "").startswith("diverged"):
        raise UserError(f"run {run.id} {run.error}; resumed, it would diverge again at the same step. "
                        "Train it again with another --lr or --seed")
    if run.status == "running":
        if died_here(run):
            return  # its process is gone: no need to wait for the heartbeat to go stale
        age = "never" if run.heartbeat_at is None else f"{(utcnow() - run.heartbeat_at).total_seconds():.0f} s ago"
        raise UserError(f"run {run.id} is still running (pid {run.pid} on {run.host}, last heartbeat {age}); it "
                        "can be resumed once it is interrupted, or shows as crashed in `sprkd runs list`")
    if run.status not in RESUMABLE:
        raise UserError(f"run {run.id} is {run.status}; only {', '.join(RESUMABLE)} runs can be resumed")


def _check_saddles_kept(store: Store, run, step: int) -> None:
    """A tracked teacher drops its worst saddle when a better one comes; a saddle stored before `step`
    and dropped after it is gone, and a resumed run could not end with the saddles of one never stopped."""
    for event in store.events(run.id):
        if event.kind == "saddle_dropped" and (event.step or 0) > step and event.payload.get("step") is not None \
                and event.payload["step"] <= step:
            raise UserError(f"run {run.id} dropped the saddle point of step {event.payload['step']} after its last "
                            f"saved training state (step {step}), so resuming cannot give the saddles of an "
                            "uninterrupted run; train it again (a smaller --checkpoint-every saves states more often)")


def _fit_and_finish(cfg: TrainConfig, store: Store, run, on_epoch: Callable | None, events, data, model,
                    method, stop: Interruptible, resume: dict | None = None) -> dict:
    from ..engine import fit, save_weights
    from ..engine.state import save_state
    from ..models import count_parameters
    from .claims import end_of_run_claims

    artifacts = store_artifacts.location(run.artifact_dir)
    events.attach(store, run.id)
    n_params = count_parameters(model)
    store.update_run(run.id, n_params=n_params)

    def record(epoch_record):
        write_epoch([(epoch_record.step, epoch_record.epoch, split, name, value)
                     for (split, name), value in epoch_record.metrics.items()])
        if on_epoch is not None:
            on_epoch(epoch_record)

    state_path = store_artifacts.join(artifacts, STATE_FILE)
    saved_at = [time.monotonic()]

    def checkpoint(epoch: int, capture: Callable[[], dict]) -> None:
        """The training state for --resume, at an epoch end: every cfg.checkpoint_every seconds, and
        before a noted SIGINT/SIGTERM ends the run (not after the last epoch: the run ends there)."""
        due = cfg.checkpoint_every == 0 or time.monotonic() - saved_at[0] >= cfg.checkpoint_every
        if epoch < cfg.epochs and (due or stop.signum is not None):
            save_state(capture(), state_path)
            saved_at[0] = time.monotonic()
        stop.check()

    started = time.perf_counter()
    hooks = [lambda step, epoch: stop.check()] + \
            ([_hessian_probe(cfg, store, run.id, model, data)] if cfg.hessian_every else []) + \
            ([_saddle_tracker(cfg, store, run.id, model, data, artifacts)] if cfg.track_saddles else [])
    from ..engine.threads import TrainingSlot, reset_threads
    from ..hessian.operator import micro_batch_default

    # The run waits for a training slot (engine.threads; CPU runs) with its heartbeat beating, SIGINT/SIGTERM
    # ending the wait, and holds it while it trains (its next waiter's start-up covers its last writes).
    # Every probe Hessian of the run (saddle checks, --hessian-every, sprkd's) holds cfg.probe_micro_batch examples.
    with Heartbeat(store, run.id), store.epoch_writer(run.id) as write_epoch, \
            micro_batch_default(cfg.probe_micro_batch), TrainingSlot() as slot:
        if next(model.parameters()).device.type == "cpu":  # a run on a GPU trains on it, not on the cores
            slot.take(check=stop.check, say=_to_stderr)
            reset_threads()  # chosen again now that it trains: what the machine did while it loaded and waited
        threads = torch.get_num_threads()  # the run's count (a library may change it during the run: fit restores it)
        result = fit(model, method, data, cfg, on_epoch=record, on_step=_each(hooks), checkpoint=checkpoint,
                     resume=resume, hooks_read_model=bool(cfg.hessian_every or cfg.track_saddles))
    metadata = getattr(model, "checkpoint_metadata", None)  # e.g. sage: the embed is the teacher's
    save_weights(model.state_dict(), store_artifacts.join(artifacts, FINAL_CHECKPOINT), metadata)
    save_weights(result.best_state, store_artifacts.join(artifacts, BEST_CHECKPOINT), metadata)
    store.set_predictions(run.id, "test", result.best_test_predictions.tolist(), data.y_test.tolist())
    summary = result.summary() | method.summary() | end_of_run_claims(cfg, result, model, data) | \
        {"wall_seconds": time.perf_counter() - started, "threads": threads,
         "slot_wait_seconds": round(slot.waited, 3)}
    store.finish_run(run.id, summary, n_params)
    store_artifacts.remove(state_path)  # a finished run is not resumed
    outcome = finished_outcome(read_run(store, run.id))
    if store.events(run.id):
        outcome |= {"events": event_counts(store, run.id), "injection": injection_mapping(store, run.id)}
    return outcome


def _each(hooks: list[Callable[[int, int], None]]) -> Callable[[int, int], None] | None:
    """One on_step hook running `hooks` in order (None when there are none)."""
    if not hooks:
        return None

    def run_all(step: int, epoch: int) -> None:
        for hook in hooks:
            hook(step, epoch)

    return run_all


def _saddle_tracker(cfg: TrainConfig, store: Store, run_id: str, model, data, artifacts):
    """on_step hook of --track-saddles (sprkd's teachers): methods/sprkd/tracking.py."""
    from ..methods.sprkd.tracking import saddle_tracker

    return saddle_tracker(cfg, store, run_id, model, data, artifacts)


def _hessian_probe(cfg: TrainConfig, store: Store, run_id: str, model, data) -> Callable[[int, int], None]:
    """on_step hook of --hessian-every: a stored Hessian report every N steps, on the run's probe set.

    The probe restores the model's mode and gradients and draws its random vectors from private
    generators, so the run trains exactly as it would without it."""
    from ..activity import doing
    from .hessian import HessianRequest, measure

    request = HessianRequest(trace=True, density=cfg.hessian_density).for_run(cfg)
    config = asdict(request)

    def probe(step: int, epoch: int) -> None:
        if step % cfg.hessian_every == 0:
            with doing(f"Hessian report at step {step}"):
                report = measure(model, data, request, cfg.seed)
            store.add_hessian_report(run_id, config | {"epoch": epoch}, report, step=step)

    return probe


def finished_outcome(run) -> dict:
    """What train-teacher and distill report for a finished run."""
    outcome = {"run_id": run.id, "status": run.status, **run.summary, "n_params": run.n_params,
               "artifact_dir": run.artifact_dir, "config_hash": run.config_hash}
    if run.summary.get("asr_fallback"):
        fallback = run.config.get("method_options", {}).get("saddle_fallback", "best")
        which = {"last": "latest", "best": "best"}.get(fallback, fallback)
        outcome["warnings"] = [f"no saddle candidate of teacher {t} passes the rule; its {which} candidate went into "
                               f"the ASR (--saddle-fallback {fallback})" for t in run.summary["asr_fallback"]]
    return outcome


def set_threads(jobs: int) -> int:
    """Torch's threads for one of `jobs` processes training at once: --threads, $SPRKD_THREADS or
    $OMP_NUM_THREADS, else this machine's cores shared with the other sprkd processes training on it
    (engine.threads)."""
    from ..engine.threads import set_threads as apply

    return apply(jobs)
