"""Artifacts in object storage: SPRKD_ARTIFACTS=s3://bucket/prefix against a local moto S3 server. Teachers,
students, Hessian plots, compare's learning curves, saddle snapshots and resume states go to the bucket
and are read back from it; nothing lands in the local artifact folder; a run killed with SIGKILL resumes
from the state in the bucket to the numbers of one never stopped; a failed upload leaves no object."""

from __future__ import annotations

import os
import uuid

import pytest
import torch

from conftest import STUDENT_ARGS, TEACHER_ARGS, open_test_store, sprkd_json
from conftest import bucket_keys as keys

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

from sprkd_cli.engine.safetensors_io import read_tensors  # noqa: E402
from sprkd_cli.store import artifacts  # noqa: E402


def test_teacher_student_hessian_and_compare_through_the_bucket(db, bucket):
    teacher = sprkd_json(db, *TEACHER_ARGS, "--track-saddles", "--saddle-every", "1", "--saddle-top-n", "8")
    tid = teacher["run_id"]
    assert teacher["artifact_dir"] == f"s3://{bucket}/sweep/{tid}"
    stored = keys(bucket)
    assert {f"sweep/{tid}/model.safetensors", f"sweep/{tid}/best.safetensors"} <= stored
    assert f"sweep/{tid}/resume.safetensors" not in stored  # a finished run keeps no training state
    store = open_test_store(db)
    points = store.saddle_points(tid)
    assert points and all(p.artifact.startswith(f"s3://{bucket}/sweep/{tid}/saddles/") for p in points)
    assert {p.artifact.removeprefix(f"s3://{bucket}/") for p in points} == \
        {k for k in stored if "/saddles/" in k}  # dropped snapshots were removed from the bucket

    student = sprkd_json(db, "distill", "--method", "kd", "--teacher", tid, *STUDENT_ARGS)  # reads the teacher from S3
    assert student["status"] == "finished" and f"sweep/{student['run_id']}/best.safetensors" in keys(bucket)
    sprkd_sprkd = sprkd_json(db, "distill", "--method", "sprkd", "--teacher", tid, "--saddle-alpha", "0",
                             *STUDENT_ARGS)  # reads a saddle snapshot from S3
    assert sprkd_sprkd["status"] == "finished"

    report = sprkd_json(db, "hessian-report", tid, "--probe-batches", "1", "--probe-size", "64", "--top-k", "1",
                        "--bottom-k", "1", "--trace", "--density", "--slq-runs", "2", "--slq-steps", "8")
    assert report["plot"] == f"s3://{bucket}/sweep/{tid}/hessian-{report['report_id']}.png"
    assert artifacts.read_bytes(report["plot"])[:8] == b"\x89PNG\r\n\x1a\n"

    compared = sprkd_json(db, "compare", *STUDENT_ARGS, "--methods", "sgd", "--seeds", "0-1")
    assert compared["plot"].startswith(f"s3://{bucket}/sweep/compare/")
    assert artifacts.read_bytes(compared["plot"])[:4] == b"\x89PNG"
    assert not any(k.rsplit("/", 1)[-1].startswith(".sprkd-write-check") for k in keys(bucket))


SLOW = ["train-teacher", "--dataset", "synthetic:n=1000,features=16,classes=3", "--model", "mlp:width=32,depth=1",
        "--epochs", "25", "--batch-size", "16", "--seed", "1"]


@pytest.mark.slow
def test_kill_9_then_resume_from_the_state_in_the_bucket(db, bucket):
    from test_resume import kill_9_after

    from sprkd_cli.services.lifecycle import CRASH_AFTER, read_runs
    from sprkd_cli.store import utcnow

    kill_9_after(db, [*SLOW, "--checkpoint-every", "0"])
    store = open_test_store(db)
    [run] = read_runs(store)
    assert f"sweep/{run.id}/resume.safetensors" in keys(bucket)
    store.update_run(run.id, heartbeat_at=utcnow() - CRASH_AFTER)
    resumed = sprkd_json(db, "train-teacher", "--resume", run.id)
    assert resumed["status"] == "finished" and resumed["run_id"] == run.id
    event = [e for e in store.events(run.id) if e.kind == "resumed"][0]
    assert event.payload["from_epoch"] >= 2 and event.payload["state"].startswith("s3://")
    assert f"sweep/{run.id}/resume.safetensors" not in keys(bucket)

    reference = sprkd_json(db, *SLOW)["run_id"]
    metrics = lambda rid: [(m.step, m.epoch, m.split, m.name, m.value) for m in store.metrics([rid])]  # noqa: E731
    assert metrics(reference) == metrics(run.id)
    for name in ("model.safetensors", "best.safetensors"):
        a = read_tensors(artifacts.join(store.get_run(reference).artifact_dir, name), "weights")[0]
        b = read_tensors(artifacts.join(store.get_run(run.id).artifact_dir, name), "weights")[0]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_failed_upload_leaves_no_object(bucket, monkeypatch):
    """Single PUT and multipart upload alike: an upload that fails midway leaves nothing at the key, and a
    previous object there stays whole."""
    import s3fs

    url = f"s3://{bucket}/sweep/run/model.safetensors"
    artifacts.write_bytes(url, b"old")
    real = s3fs.S3FileSystem._call_s3

    async def failing(self, method, *args, **kwargs):
        if method in ("put_object", "upload_part") and kwargs.get("PartNumber", 2) >= 2:
            body = kwargs.get("Body", b"")
            raise ConnectionError(f"connection reset after {len(body) // 2} of {len(body)} bytes")
        return await real(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", failing)
    with pytest.raises(ConnectionError):
        artifacts.write_bytes(url, b"new" * 100)
    # multipart (a 5 MiB first part goes up, the second fails): s3fs aborts the upload
    fs, path = artifacts._fs(url)
    new_key = f"s3://{bucket}/sweep/run/best.safetensors"
    with pytest.raises(ConnectionError):
        fs.pipe_file(artifacts._fs(new_key)[1], b"x" * (11 * 2**20), chunksize=5 * 2**20)
    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", real)
    assert artifacts.read_bytes(url) == b"old"
    assert not artifacts.exists(new_key)
    assert keys(bucket) == {"sweep/run/model.safetensors"}


def test_locations_local_stay_plain_paths(tmp_path):
    from pathlib import Path

    assert artifacts.location(str(tmp_path)) == tmp_path
    assert artifacts.location(f"file://{tmp_path}") == tmp_path
    assert artifacts.location("s3://b/p/") == "s3://b/p"
    assert artifacts.join("s3://b/p", "r", "x.png") == "s3://b/p/r/x.png"
    target = Path(tmp_path) / "d" / "f.bin"
    artifacts.write_bytes(target, b"abc")
    assert artifacts.read_bytes(target) == b"abc" and os.listdir(target.parent) == ["f.bin"]
    artifacts.remove(target)
    artifacts.remove(target)
    assert not artifacts.exists(target)


def test_the_global_artifacts_option_beats_the_environment(db, bucket, monkeypatch, tmp_path):
    from conftest import sprkd

    monkeypatch.setenv("SPRKD_ARTIFACTS", str(tmp_path / "artifacts"))
    result = sprkd(None, "--db", str(db), "--artifacts", f"s3://{bucket}/other", *TEACHER_ARGS, "--json")
    assert result.exit_code == 0, result.output
    assert f"other/{__import__('json').loads(result.stdout)['run_id']}/best.safetensors" in keys(bucket)


def test_an_unreachable_bucket_is_refused_before_training(db, bucket, monkeypatch):
    from conftest import assert_user_error, sprkd

    monkeypatch.setenv("SPRKD_ARTIFACTS", f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/x")
    assert_user_error(sprkd(db, *TEACHER_ARGS),
        "cannot write run artifacts under the artifact root s3://no-such-bucket")


def test_weights_and_their_header_round_trip_through_the_bucket(bucket):
    from sprkd_cli.engine.safetensors_io import read_metadata, write_tensors
    from sprkd_cli.errors import UserError

    url = f"s3://{bucket}/sweep/r/model.safetensors"
    write_tensors(url, {"w": torch.arange(6.0).view(2, 3)}, {"embed_config": "{}"})
    tensors, meta = read_tensors(url, "checkpoint")
    assert torch.equal(tensors["w"], torch.arange(6.0).view(2, 3)) and meta == {"embed_config": "{}"}
    assert read_metadata(url) == {"embed_config": "{}"}
    assert read_metadata(f"s3://{bucket}/sweep/r/missing.safetensors") == {}
    with pytest.raises(UserError, match="is missing"):
        read_tensors(f"s3://{bucket}/sweep/r/missing.safetensors", "checkpoint")
    artifacts.write_bytes(url, b"\x80\x04not safetensors")
    with pytest.raises(UserError, match="not a safetensors file"):
        read_tensors(url, "checkpoint")
