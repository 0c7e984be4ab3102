"""The result store: runs, their metrics, events, Hessian reports, saddle points and predictions."""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import delete, insert, select, text, tuple_, update
from sqlalchemy.orm import Session, sessionmaker

from ..choices import RUN_KINDS, RUN_STATUSES  # noqa: F401  (the store's vocabulary)
from ..errors import UserError
from ..redact import scrub
from .artifacts import join as artifact_join
from .database import display_url, make_engine, resolve_url, retry_when_locked, sqlite_path, store_error, upgrade
from .schema import Event, HessianReport, Metric, Prediction, Run, RunArm, SaddlePoint

__all__ = ["Store", "RunTaken", "open_store", "store_url", "store_error", "Run", "Metric", "Event", "HessianReport",
           "SaddlePoint", "Prediction"]

DEFAULT_DB = "runs.db"
BRIEF_LEFT_OUT = ("config", "versions", "artifact_dir", "started_at")  # list_runs(brief=True)


class RunTaken(Exception):
    """The experiment (config hash and seed) a run was to start or resume for is taken by `run`: finished,
    or running in a live process (see Store.create_run's `blocks`)."""

    def __init__(self, run: Run):
        super().__init__(f"run {run.id} is {run.status} for the same config and seed")
        self.run = run


def key_lock(config_hash: str, seed: int) -> int:
    """The PostgreSQL advisory-lock key (a signed 64-bit number) of one experiment: config hash and seed."""
    import hashlib

    digest = hashlib.blake2b(f"sprkd-run:{config_hash}:{seed}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def safe_name(text: str) -> str:
    """`text` as one file name: every character outside letters, digits, '.', '_' and '-' becomes '_',
    and it cannot be '.', '..' or start with a dot."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".")
    return name[:200] or "_"


def store_url(db: str | None = None) -> str:
    """The URL of the store named by `db`, else $SPRKD_DB (when set and not empty), else ./runs.db."""
    return resolve_url(db if db is not None else os.environ.get("SPRKD_DB") or DEFAULT_DB)


def open_store(db: str | None = None, artifacts: str | None = None) -> "Store":
    """Open (creating and upgrading as needed) the store named by `db`, $SPRKD_DB or ./runs.db, with its
    artifact root `artifacts`, else $SPRKD_ARTIFACTS (when set and not empty), else the default (see
    Store.artifact_root)."""
    return Store(store_url(db), artifacts if artifacts is not None else os.environ.get("SPRKD_ARTIFACTS") or None)


class Store:
    def __init__(self, url: str, artifacts: str | None = None):
        """The store at `url`; its artifact root `artifacts` (a folder, or any fsspec URL such as
        s3://bucket/prefix: see store.artifacts), None for the default beside it."""
        self.url = url
        self.artifacts = artifacts
        self.engine = make_engine(url)
        upgrade(self.engine, url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def shown_url(self) -> str:
        """The store's URL for messages and logs: its password masked."""
        return display_url(self.url)

    def session(self) -> Session:
        return self._sessions()

    @property
    def artifact_root(self) -> "Path | str":
        """The store's `artifacts`, else `runs/` beside a SQLite file, else ./runs. A Path when local, the
        URL otherwise."""
        from .artifacts import is_remote, location

        if self.artifacts:
            root = location(self.artifacts)
            return root if is_remote(root) else root.expanduser().resolve()
        path = sqlite_path(self.url)
        return (path.parent if path else Path.cwd()) / "runs"

    def check_artifact_root(self) -> None:
        """UserError unless files can be written under the artifact root (created if missing): checked
        before a run starts, so that a run does not train only to fail at saving its weights."""
        from .artifacts import check_writable, is_remote

        root = self.artifact_root
        where = f"the artifact root {root}" + (" ($SPRKD_ARTIFACTS)" if self.artifacts else "")
        if is_remote(root):
            try:
                check_writable(root)
            except UserError:
                raise
            except Exception as exc:  # fsspec backends raise their own errors (botocore's, aiohttp's)
                raise UserError(f"cannot write run artifacts under {where}: {type(exc).__name__}: {exc}; "
                                "check the URL, the credentials and the endpoint (AWS_ENDPOINT_URL)") from None
            return
        if root.exists() and not root.is_dir():
            raise UserError(f"{where} is a file, not a folder; set SPRKD_ARTIFACTS to a folder you can write")
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=root, prefix=".sprkd-write-check-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            from ..errors import os_error_message

            reason = exc.strerror if exc.filename == str(root) else os_error_message(exc)
            raise UserError(f"cannot write run artifacts under {where}: {reason}; "
                            "set SPRKD_ARTIFACTS to a folder you can write") from None

    def artifact_path(self, *names: str) -> "Path | str":
        """A location under the artifact root made of `names`, each one turned into a safe file name, so a
        user-given string (a dataset spec, a method name) cannot lead outside the root."""
        from .artifacts import is_remote, join

        root = self.artifact_root
        if is_remote(root):
            return join(root, *(safe_name(n) for n in names))  # a safe name has no '/' and is not '..'
        root = root.resolve()
        path = root.joinpath(*(safe_name(n) for n in names))
        if not path.resolve().is_relative_to(root):
            raise UserError(f"'{'/'.join(names)}' would lead outside the artifact root {root}")
        return path

    # -- runs -----------------------------------------------------------------------------
    def _taking(self, s: Session, config_hash: str, seed: int, blocks: Callable[[Run], bool] | None,
                except_id: str | None = None) -> Run | None:
        """In `s`'s transaction, holding the experiment's lock (SQLite: the write lock, taken by BEGIN
        IMMEDIATE; PostgreSQL: an advisory lock on the config hash and seed, until the transaction ends):
        the newest finished or running run of it (but `except_id`) for which `blocks` holds, detached;
        None when there is none or `blocks` is None."""
        if blocks is None:
            return None
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key_lock(config_hash, seed)})
        query = (select(Run).where(Run.config_hash == config_hash, Run.seed == seed,
                                   Run.status.in_(("finished", "running")), Run.id != (except_id or ""))
                 .order_by(Run.created_at.desc()))
        for run in s.scalars(query):
            if blocks(run):
                s.expunge(run)
                return run
        return None

    def taken_by(self, config_hash: str, seed: int, blocks: Callable[[Run], bool]) -> Run | None:
        """The run that takes this experiment now (see create_run's `blocks`), read without locking."""
        query = (select(Run).where(Run.config_hash == config_hash, Run.seed == seed,
                                   Run.status.in_(("finished", "running"))).order_by(Run.created_at.desc()))
        with self.session() as s:
            return next((run for run in s.scalars(query) if blocks(run)), None)

    @retry_when_locked
    def create_run(self, *, kind: str, method: str, dataset: str, model: str, seed: int, config: dict,
                   config_hash: str, teacher_ids: Sequence[str], provenance: dict, device: str, process: dict,
                   arm: str | None = None, blocks: Callable[[Run], bool] | None = None) -> Run:
        """A new run, running in `process` ({host, pid, pid_started}: see services.lifecycle.this_process);
        a student belongs to `arm` (default: the arm named after its method). With `blocks`, the run is
        the experiment's reservation: it is written only if no finished or running run of the same config
        hash and seed for which blocks(run) holds exists, checked and written in one transaction under the
        experiment's lock, so that of processes starting it at once one trains it; the others get
        RunTaken naming the run that took it."""
        run_id = uuid.uuid4().hex[:12]
        now = utcnow()
        run = Run(
            id=run_id, kind=kind, method=method, dataset=dataset, model=model, seed=seed,
            status="running", config=config, config_hash=config_hash, teacher_ids=list(teacher_ids),
            git_commit=provenance.get("git_commit"), git_dirty=provenance.get("git_dirty"),
            versions=provenance.get("versions", {}), device=device, **process, created_at=now, started_at=now,
            heartbeat_at=now, summary={},
            artifact_dir=str(artifact_join(self.artifact_root, run_id)),
        )
        with self.session() as s, s.begin():
            taken = self._taking(s, config_hash, seed, blocks)
            if taken is None:
                s.add(run)
                if kind == "student":
                    s.flush()
                    s.add(RunArm(run_id=run_id, arm=arm or method))
        if taken is not None:
            raise RunTaken(taken)
        return run

    @retry_when_locked
    def link_arm(self, run_id: str, arm: str) -> None:
        """`run_id` belongs to `arm` too (a run reused by an arm of another name)."""
        with self.session() as s, s.begin():
            if s.get(RunArm, (run_id, arm)) is None:
                s.add(RunArm(run_id=run_id, arm=arm))

    def arm_names(self) -> list[str]:
        """Every arm some run belongs to."""
        with self.session() as s:
            return sorted(s.scalars(select(RunArm.arm).distinct()))

    def arms_of(self, run_id: str) -> list[str]:
        with self.session() as s:
            return sorted(s.scalars(select(RunArm.arm).where(RunArm.run_id == run_id)))

    def arms_of_runs(self, run_ids: Sequence[str]) -> dict[str, list[str]]:
        """{run id: its arms, sorted} for the runs of `run_ids` that belong to some arm."""
        out: dict[str, list[str]] = {}
        with self.session() as s:
            for start in range(0, len(run_ids), 500):  # bound parameters per statement stay few
                query = select(RunArm.run_id, RunArm.arm).where(RunArm.run_id.in_(list(run_ids[start:start + 500])))
                for run_id, arm in s.execute(query.order_by(RunArm.run_id, RunArm.arm)):
                    out.setdefault(run_id, []).append(arm)
        return out

    @retry_when_locked
    def update_run(self, run_id: str, **fields) -> None:
        if fields.get("error"):  # a driver's message may quote the store's password
            fields["error"] = scrub(fields["error"], self.url)
        with self.session() as s, s.begin():
            run = s.get(Run, run_id)
            for key, value in fields.items():
                setattr(run, key, value)

    def finish_run(self, run_id: str, summary: dict, n_params: int) -> None:
        now = utcnow()
        self.update_run(run_id, status="finished", summary=summary, n_params=n_params, ended_at=now, heartbeat_at=now)

    def touch_run(self, run_id: str) -> None:
        """The run's heartbeat: it is alive now."""
        with self.session() as s, s.begin():
            s.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow()))

    @retry_when_locked
    def interrupt_run(self, run_id: str, reason: str) -> None:
        """End a run still running as interrupted (one that already finished or failed stays so)."""
        with self.session() as s, s.begin():
            s.execute(update(Run).where(Run.id == run_id, Run.status == "running")
                      .values(status="interrupted", error=scrub(reason, self.url), ended_at=utcnow()))

    @retry_when_locked
    def reopen_run(self, run: Run, epoch: int, step: int, process: dict,
                   blocks: Callable[[Run], bool] | None = None) -> list[str]:
        """Take up `run` (as read: interrupted, failed or crashed) again in `process`, to resume after
        `epoch` (`step` optimiser steps): in one transaction, claim it (only if nobody changed it since
        it was read, so two processes cannot both resume it) and delete what it recorded after that
        point (metrics, events, Hessian reports and saddle points; predictions are written at the end).
        Returns the artifacts of the deleted saddle points, for the caller to remove. With `blocks`, as
        in create_run: RunTaken when another run of the same experiment has taken it meanwhile."""
        stored_status = "running" if run.status == "crashed" else run.status
        seen = Run.heartbeat_at.is_(None) if run.heartbeat_at is None else Run.heartbeat_at == run.heartbeat_at
        now = utcnow()
        with self.session() as s, s.begin():
            taken = self._taking(s, run.config_hash, run.seed, blocks, except_id=run.id)
            if taken is not None:
                raise RunTaken(taken)
            claimed = s.execute(
                update(Run).where(Run.id == run.id, Run.status == stored_status, seen)
                .values(status="running", error=None, ended_at=None, summary={}, **process, heartbeat_at=now)).rowcount
            if claimed != 1:
                raise UserError(f"run {run.id} changed while being resumed (another process resumed it?); "
                                "see `sprkd runs show`")
            s.execute(delete(Metric).where(Metric.run_id == run.id, Metric.epoch > epoch))
            # an event at an epoch's start (a sage round) carries the steps done before it: the epoch decides
            s.execute(delete(Event).where(Event.run_id == run.id, (Event.epoch > epoch) | (Event.step > step)))
            s.execute(delete(HessianReport).where(HessianReport.run_id == run.id, HessianReport.step > step))
            later = (SaddlePoint.run_id == run.id) & (SaddlePoint.step > step)
            gone = list(s.scalars(select(SaddlePoint.artifact).where(later)))
            s.execute(delete(SaddlePoint).where(later))
            s.execute(delete(Prediction).where(Prediction.run_id == run.id))
        return gone

    def fail_run(self, run_id: str, error: str, summary: dict | None = None) -> None:
        fields = {"status": "failed", "error": error, "ended_at": utcnow()}
        if summary is not None:
            fields["summary"] = summary
        self.update_run(run_id, **fields)

    def get_run(self, ref: str) -> Run:
        """A run by id or unique id prefix, as stored (services.lifecycle.read_run: as a reader sees it)."""
        with self.session() as s:
            run = s.get(Run, ref)
            if run is not None:
                return run
            matches = s.scalars(select(Run).where(Run.id.startswith(ref, autoescape=True)).limit(3)).all()
        if not matches:
            raise UserError(f"no run '{ref}' in {self.shown_url}; see `sprkd runs list`")
        if len(matches) > 1:
            raise UserError(f"run id prefix '{ref}' is ambiguous ({', '.join(m.id for m in matches)}, ...); give more "
                            "characters")
        return matches[0]

    def list_runs(self, *, kind: str | None = None, method: str | None = None, dataset: str | None = None,
                  status: str | None = None, model: str | None = None, limit: int | None = None,
                  brief: bool = False, arm: str | None = None) -> list[Run]:
        """Runs newest first, filtered by equality on bound parameters, with their stored status (a crashed
        run is stored as running: services.lifecycle.read_runs tells them apart). `brief`: plain records
        of every column but the config, library versions, artifact folder and start time (the largest
        columns; no ORM objects), for listings of many runs. `arm`: only the runs that belong to it."""
        if brief:
            table = Run.__table__
            query = select(*(c for c in table.columns if c.name not in BRIEF_LEFT_OUT))
        else:
            query = select(Run)
        query = query.order_by(Run.created_at.desc(), Run.id)
        for column, value in ((Run.kind, kind), (Run.method, method), (Run.dataset, dataset),
                              (Run.status, status), (Run.model, model)):
            if value is not None:
                query = query.where(column == value)
        if arm is not None:
            query = query.where(Run.id.in_(select(RunArm.run_id).where(RunArm.arm == arm)))
        if limit:
            query = query.limit(limit)
        if brief:
            with self.engine.connect() as conn:
                return [SimpleNamespace(**row._mapping) for row in conn.execute(query)]
        with self.session() as s:
            return list(s.scalars(query))

    def latest_teacher(self, dataset: str, split_seed: int) -> Run | None:
        """The newest finished teacher run of `dataset` trained on the split of `split_seed`, or None."""
        for run in self.list_runs(kind="teacher", dataset=dataset, status="finished"):
            if run.config.get("split_seed") == split_seed:
                return run
        return None

    def find_finished(self, config_hash: str, seed: int) -> Run | None:
        query = (select(Run).where(Run.config_hash == config_hash, Run.seed == seed, Run.status == "finished")
                 .order_by(Run.created_at.desc()).limit(1))
        with self.session() as s:
            return s.scalars(query).first()

    def unfinished_runs(self, config_hash: str, seed: int) -> list[Run]:
        """The runs of this config and seed stored as interrupted or running, newest first."""
        query = (select(Run).where(Run.config_hash == config_hash, Run.seed == seed,
                                   Run.status.in_(("interrupted", "running")))
                 .order_by(Run.created_at.desc()))
        with self.session() as s:
            return list(s.scalars(query))

    def diverged_run(self, config_hash: str, seed: int) -> Run | None:
        """The newest run of this config and seed that failed because its loss diverged, if any."""
        query = (select(Run).where(Run.config_hash == config_hash, Run.seed == seed, Run.status == "failed",
                                   Run.error.like("diverged:%"))
                 .order_by(Run.created_at.desc()).limit(1))
        with self.session() as s:
            return s.scalars(query).first()

    # -- per-run rows ---------------------------------------------------------------------
    @retry_when_locked
    def add_metrics(self, run_id: str, rows: Iterable[tuple[int, int, str, str, float]]) -> None:
        """rows: (step, epoch, split, name, value). One transaction (plain inserts, no ORM objects: this
        runs every epoch); the heartbeat moves with it."""
        values = [{"run_id": run_id, "step": st, "epoch": ep, "split": sp, "name": n, "value": float(v)}
                  for st, ep, sp, n, v in rows]
        with self.engine.begin() as conn:
            if values:
                conn.execute(insert(Metric), values)
            conn.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow()))

    def metrics(self, run_ids: Sequence[str]) -> list[Metric]:
        query = select(Metric).where(Metric.run_id.in_(list(run_ids))).order_by(Metric.run_id, Metric.step, Metric.id)
        with self.session() as s:
            return list(s.scalars(query))

    @contextmanager
    def epoch_writer(self, run_id: str):
        """write(rows) for a training run's epochs: the metric rows in one plain-SQL statement on a
        connection held until the block ends (see store.writer); add_metrics where the driver's
        parameter style is unknown."""
        from .writer import EpochWriter

        try:
            writer = EpochWriter(self.engine, run_id)
        except NotImplementedError:
            yield lambda rows: self.add_metrics(run_id, rows)
            return
        try:
            yield writer.write
        finally:
            writer.close()

    def metric_at(self, points: Sequence[tuple[str, int]], split: str, name: str) -> dict[tuple[str, int], float]:
        """{(run_id, epoch): value} of one metric at the given (run id, epoch) points: only those rows,
        as plain tuples."""
        found: dict[tuple[str, int], float] = {}
        points = list(points)
        with self.engine.connect() as conn:
            for start in range(0, len(points), 2000):  # bound parameters per statement stay few
                query = select(Metric.run_id, Metric.epoch, Metric.value).where(
                    tuple_(Metric.run_id, Metric.epoch).in_(points[start:start + 2000]), Metric.split == split,
                    Metric.name == name)
                found.update({(run_id, epoch): value for run_id, epoch, value in conn.execute(query)})
        return found

    def metric_curves(self, run_ids: Sequence[str], split: str, name: str) -> dict[str, list[float]]:
        """{run id: one metric's per-epoch values in epoch order} (a run without rows is left out)."""
        by_run: dict[str, dict[int, float]] = {}
        run_ids = list(run_ids)
        with self.engine.connect() as conn:
            for start in range(0, len(run_ids), 2000):
                query = select(Metric.run_id, Metric.epoch, Metric.value).where(
                    Metric.run_id.in_(run_ids[start:start + 2000]), Metric.split == split, Metric.name == name)
                for run_id, epoch, value in conn.execute(query):
                    by_run.setdefault(run_id, {})[epoch] = value
        return {run_id: [per_epoch[e] for e in sorted(per_epoch)] for run_id, per_epoch in by_run.items()}

    @retry_when_locked
    def add_event(self, run_id: str, kind: str, payload: dict | None = None, *, step: int | None = None,
                  epoch: int | None = None) -> None:
        with self.session() as s, s.begin():
            s.add(Event(run_id=run_id, kind=kind, payload=payload or {}, step=step, epoch=epoch, created_at=utcnow()))

    def events(self, run_id: str) -> list[Event]:
        with self.session() as s:
            return list(s.scalars(select(Event).where(Event.run_id == run_id).order_by(Event.id)))

    @retry_when_locked
    def add_saddle_point(self, run_id: str, *, step: int, epoch: int, probe_loss: float, eigenvalues: Sequence[float],
                         s_neg: float, s_pos: float, artifact: str) -> int:
        row = SaddlePoint(run_id=run_id, step=step, epoch=epoch, probe_loss=float(probe_loss),
                          eigenvalues=[float(v) for v in eigenvalues], s_neg=float(s_neg), s_pos=float(s_pos),
                          artifact=artifact)
        with self.session() as s, s.begin():
            s.add(row)
            s.flush()
            return row.id

    def saddle_points(self, run_id: str) -> list[SaddlePoint]:
        """A run's stored saddle points, in the order they were found."""
        query = select(SaddlePoint).where(SaddlePoint.run_id == run_id).order_by(SaddlePoint.step, SaddlePoint.id)
        with self.session() as s:
            return list(s.scalars(query))

    @retry_when_locked
    def delete_saddle_point(self, saddle_id: int) -> None:
        with self.session() as s, s.begin():
            s.execute(delete(SaddlePoint).where(SaddlePoint.id == saddle_id))

    @retry_when_locked
    def add_hessian_report(self, run_id: str, config: dict, result: dict, *, step: int | None = None) -> int:
        row = HessianReport(run_id=run_id, step=step, created_at=utcnow(), config=config, result=result,
                            n_hvp=int(result["n_hvp"]), seconds=float(result["seconds"]))
        with self.session() as s, s.begin():
            s.add(row)
            s.flush()
            return row.id

    def hessian_reports(self, run_id: str) -> list[HessianReport]:
        query = select(HessianReport).where(HessianReport.run_id == run_id).order_by(HessianReport.id)
        with self.session() as s:
            return list(s.scalars(query))

    @retry_when_locked
    def set_predictions(self, run_id: str, split: str, predicted: Sequence[int], labels: Sequence[int]) -> None:
        with self.session() as s, s.begin():
            s.execute(delete(Prediction).where(Prediction.run_id == run_id, Prediction.split == split))
            s.add_all(Prediction(run_id=run_id, split=split, example=i, predicted=int(p), label=int(y))
                      for i, (p, y) in enumerate(zip(predicted, labels)))

    def predictions(self, run_id: str, split: str = "test") -> list[Prediction]:
        query = (select(Prediction).where(Prediction.run_id == run_id, Prediction.split == split)
                 .order_by(Prediction.example))
        with self.session() as s:
            return list(s.scalars(query))
