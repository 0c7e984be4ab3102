"""The result store's tables. Every change to them goes through a migration in migrations/."""

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # teacher | student
    method: Mapped[str] = mapped_column(String(32))
    dataset: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(128))
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # running | finished | failed | interrupted (crashed: read-time)
    config: Mapped[dict] = mapped_column(JSON)
    config_hash: Mapped[str] = mapped_column(String(64))
    teacher_ids: Mapped[list] = mapped_column(JSON, default=list)
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    git_dirty: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    versions: Mapped[dict] = mapped_column(JSON, default=dict)
    device: Mapped[str] = mapped_column(String(32))
    n_params: Mapped[int | None] = mapped_column(Integer, nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # the process's start (clock ticks after boot, Linux's /proc/<pid>/stat): a reused pid is another process
    pid_started: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    summary: Mapped[dict] = mapped_column(JSON, default=dict)
    artifact_dir: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        Index("ix_runs_lookup", "dataset", "kind", "method", "status"),
        Index("ix_runs_config", "config_hash", "seed"),
    )


class RunArm(Base):
    """A run belongs to the arms it was trained or reused for (`compare --arm NAME=...`); a run of
    `distill` to the arm named after its method."""

    __tablename__ = "run_arms"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    arm: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Metric(Base):
    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(16))  # train | val | test
    name: Mapped[str] = mapped_column(String(64))  # loss | acc | ...
    value: Mapped[float] = mapped_column(Float)


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class HessianReport(Base):
    __tablename__ = "hessian_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    config: Mapped[dict] = mapped_column(JSON)  # what produced it: probe set, mode, dtype, seed, hvp kind
    result: Mapped[dict] = mapped_column(JSON)  # what it measured
    n_hvp: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)


class SaddlePoint(Base):
    __tablename__ = "saddle_points"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    probe_loss: Mapped[float] = mapped_column(Float)
    eigenvalues: Mapped[list] = mapped_column(JSON)
    s_neg: Mapped[float] = mapped_column(Float)
    s_pos: Mapped[float] = mapped_column(Float)
    artifact: Mapped[str] = mapped_column(Text)


class Prediction(Base):
    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    split: Mapped[str] = mapped_column(String(16))
    example: Mapped[int] = mapped_column(Integer)  # index within the split
    predicted: Mapped[int] = mapped_column(Integer)
    label: Mapped[int] = mapped_column(Integer)
