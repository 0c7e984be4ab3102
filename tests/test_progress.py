"""Progress on long work: plain lines when stderr is not a terminal (a log), the activity labels of saddle
checks and Hessian steps, and compare's per-run lines."""

from __future__ import annotations

import re

import pytest

from sprkd_cli.activity import listening
from sprkd_cli.cli.app import PlainProgress

from conftest import (
    DATA,
    PROGRESS_LINE,
    STUDENT_ARGS,
    TEACHER_MODEL,
    open_test_store,
    run_subprocess,
    sprkd,
    train_teacher,
)

CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # anything but a newline: no ANSI escapes, no \r


def test_plain_progress_prints_at_most_a_line_per_interval_and_always_the_last(capsys):
    bar = PlainProgress(interval=5.0)
    now = [0.0]
    bar.clock, bar.started = (lambda: now[0]), 0.0
    task = bar.add_task("teacher sgd seed 0", total=10, info="")
    for epoch in range(1, 11):
        now[0] = epoch * 1.0  # an epoch a second
        bar.update(task, completed=epoch, info=f"val_acc 0.{epoch}")
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["[     1s] teacher sgd seed 0 1/10 val_acc 0.1", "[     6s] teacher sgd seed 0 6/10 val_acc 0.6",
                     "[    10s] teacher sgd seed 0 10/10 val_acc 0.10"]
    every = bar.add_task("runs", total=3, plain_interval=0)
    for _ in range(3):
        bar.update(every, advance=1)
    assert capsys.readouterr().err.splitlines() == ["[    10s] runs 1/3", "[    10s] runs 2/3", "[    10s] runs 3/3"]


@pytest.mark.slow
def test_saddle_checks_are_announced_while_they_run(db):
    from sprkd_cli.config import TrainConfig
    from sprkd_cli.services.training import train_run

    labels = []
    cfg = TrainConfig(kind="teacher", method="sgd", dataset=DATA, model=TEACHER_MODEL, epochs=1, track_saddles=True,
                      saddle_every=2, saddle_top_n=4)
    with listening(labels.append):
        assert train_run(cfg, open_test_store(db))["status"] == "finished"
    checks = [label for label in labels if label]
    assert checks and all(label.startswith("saddle check at step ") for label in checks)
    assert labels.count(None) == len(checks)  # each one's end is told too


@pytest.mark.slow
def test_hessian_report_prints_its_steps_in_a_log(db):
    teacher = train_teacher(db)["run_id"]
    result = sprkd(db, "hessian-report", teacher, "--trace", "--density", "--slq-runs", "2", "--slq-steps", "6")
    assert result.exit_code == 0, result.output
    log = result.stderr
    for step in ("Lanczos: top 5, bottom 1 eigenvalues", "Hutch++ trace: 99 HVPs", "SLQ density: 2 runs x 6"):
        assert step in log, log
    assert all(PROGRESS_LINE.match(line) for line in log.splitlines()) and not CONTROL.search(log)


@pytest.mark.slow
def test_compare_piped_to_a_file_prints_plain_lines_per_run(db, tmp_path):
    train_teacher(db)
    done = run_subprocess(db, "compare", *STUDENT_ARGS, "--seeds", "0-1", "--jobs", "2", "--epochs", "40")
    assert done.returncode == 0, done.stderr
    log = done.stderr
    (tmp_path / "compare.log").write_text(log)
    lines = log.splitlines()
    assert lines and all(PROGRESS_LINE.match(line) for line in lines), log
    assert not CONTROL.search(log)
    finished = [line for line in lines if re.search(r"\] runs \d/4 \(run [0-9a-f]{12} test_acc [01]\.\d{4}\)$", line)]
    assert len(finished) == 4, log  # a line per finished run
    # a line per running run: its arm, seed, epoch and validation accuracy
    running = [line for line in lines if re.search(r"\]   (kd|sgd) seed [01] \d+/40", line)]
    assert running, log
    # past its first epoch a running run's line has its validation accuracy (how many such lines a log gets
    # depends on the machine's speed: the store is polled every 2 s)
    started = [line for line in running if not re.search(r" 0/40", line)]
    assert all(re.search(r"val_acc [01]\.\d{4}$", line) for line in started), log
