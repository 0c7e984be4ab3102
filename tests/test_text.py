"""Text tasks and transformers: GLUE-format files, the tokenisation cache, hf: models split into
embed and body, train-teacher then sgd/kd/sage through the CLI, and one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sprkd_cli.data import load_dataset
from sprkd_cli.data.source import cache_root

from conftest import assert_user_error, open_test_store, sprkd, sprkd_json
from textdata import VOCAB, qnli_rows, sst2_dir, tiny_model, write_csv

TRAIN = ["--epochs", "2", "--lr", "5e-3", "--batch-size", "32"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"teacher": tiny_model(root / "teacher", layers=2), "student": tiny_model(root / "student", seed=1),
            "narrow": tiny_model(root / "narrow", hidden=16, seed=2),
            "distil": tiny_model(root / "distil", kind="distil", seed=3)}


@pytest.mark.slow
def test_glue_files_teacher_then_sgd_kd_sage_end_to_end(db, tmp_path, models):
    glue = sst2_dir(tmp_path / "glue")
    data = ["--dataset", "sst2", "--data-dir", str(glue)]
    teacher = sprkd_json(db, "train-teacher", *data, "--model", f"hf:{models['teacher']}", *TRAIN)
    assert teacher["status"] == "finished"
    outcomes = {}
    taught = ["--teacher", teacher["run_id"]]
    for method, student, extra in (("sgd", "student", []), ("kd", "distil", taught),
                                   ("sage", "student", [*taught, "--sage-rounds", "1"])):
        outcomes[method] = sprkd_json(db, "distill", "--method", method, *data, "--student", f"hf:{models[student]}",
                                      *extra, *TRAIN)
        assert outcomes[method]["status"] == "finished" and 0.0 <= outcomes[method]["test_acc"] <= 1.0
    store = open_test_store(db)
    rounds = [e for e in store.events(outcomes["sage"]["run_id"]) if e.kind == "sage_round"]
    assert len(rounds) == 1 and rounds[0].epoch == 2
    payload = rounds[0].payload
    assert payload["synth"] == "interpolate"  # token sequences interpolate the original vectors
    assert 0 < payload["synthetic"] <= payload["budget"] == 14  # 10% of the 144 training sentences
    for key in ("anchors", "threshold", "umap_seconds", "label_seconds"):
        assert key in payload
    run = store.get_run(outcomes["sage"]["run_id"])
    assert run.config["data"]["input_shape"][0] == 3 and run.config["data"]["n_train"] == 144
    assert run.config["data"]["n_test"] == 40  # GLUE validation is the test split
    # the same finished runs, reused by compare
    compared = sprkd_json(db, "compare", "--methods", "sgd,sage", *data, "--student", f"hf:{models['student']}",
                          "--teacher", teacher["run_id"], "--seeds", "0", "--sage-rounds", "1", *TRAIN)
    assert compared["ran"] == 0 and compared["reused"] == 2


@pytest.mark.slow
def test_the_toy_sentiment_task_is_learnt_by_teacher_and_students(db, tmp_path, models):
    """The label is carried by one GOOD or BAD word per sentence: a pipeline that tokenises, batches
    and distils correctly learns it; one that loses the words (all [UNK]) stays at chance."""
    data = ["--dataset", "sst2", "--data-dir", str(sst2_dir(tmp_path / "glue"))]
    longer = ["--epochs", "10", "--lr", "5e-3", "--batch-size", "16"]
    teacher = sprkd_json(db, "train-teacher", *data, "--model", f"hf:{models['teacher']}", *longer)
    assert teacher["test_acc"] >= 0.9
    for method in ("kd", "sage"):  # a DistilBERT student of the BERT teacher, as in the SAGE paper
        outcome = sprkd_json(db, "distill", "--method", method, *data, "--student", f"hf:{models['distil']}",
                             "--teacher", teacher["run_id"], *longer)
        assert outcome["test_acc"] >= 0.85, (method, outcome["test_acc"])
    # sage gave the DistilBERT student the BERT teacher's embedding module (token types and all): the
    # run's model is rebuilt from its checkpoint with it, and scores what the run reported
    from sprkd_cli.engine import evaluate
    from sprkd_cli.services.loading import load_run_model

    store = open_test_store(db)
    run = store.get_run(outcome["run_id"])
    model = load_run_model(run)
    assert type(model.embed.embeddings).__name__ == "BertEmbeddings"
    data_set = load_dataset("sst2", 0, data_dir=str(tmp_path / "glue"), model=f"hf:{models['teacher']}")
    assert evaluate(model, data_set.x_test, data_set.y_test)[1] == pytest.approx(outcome["test_acc"])
    report = sprkd_json(db, "hessian-report", run.id, "--top-k", "1", "--bottom-k", "0", "--probe-size", "32")
    assert report["top_eigenvalues"][0] > 0


def test_tokenisation_is_cached_per_data_tokenizer_and_length(tmp_path, models, monkeypatch):
    from sprkd_cli.data import text

    glue = sst2_dir(tmp_path / "glue")
    first = load_dataset("sst2:max_len=16", 3, data_dir=str(glue), model=f"hf:{models['teacher']}")
    assert first.x_train.dtype == torch.long and first.x_train.shape[1] == 3 and first.x_train.shape[2] <= 16
    # every word of the generated sentences is in the tokenizer's vocabulary: no [UNK] (id 1)
    ids, mask = first.x_train[:, 0], first.x_train[:, 1].bool()
    assert not (ids[mask] == VOCAB.index("[UNK]")).any() and len(ids[mask].unique()) > 20
    assert len(list(cache_root().glob("text/sst2-*-L16.safetensors"))) == 1  # not in the data folder
    assert sorted(p.name for p in glue.iterdir()) == ["train.csv", "validation.csv"]

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(text, "tokenize", no_tokenizing)
    again = load_dataset("sst2:max_len=16", 3, data_dir=str(glue), model=f"hf:{models['student']}")  # same vocabulary
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    assert again.describe() == first.describe()
    with pytest.raises(AssertionError, match="tokenised again"):  # another max length is another cache entry
        load_dataset("sst2:max_len=12", 3, data_dir=str(glue), model=f"hf:{models['teacher']}")
    # the split seed carves validation from train, stratified; the test split is GLUE validation
    other = load_dataset("sst2:max_len=16", 4, data_dir=str(glue), model=f"hf:{models['teacher']}")
    assert torch.equal(other.x_test, first.x_test) and not torch.equal(other.y_train, first.y_train)
    assert first.y_val.sum().item() == len(first.y_val) // 2


def test_qnli_pairs_from_a_saved_dataset_carry_token_types(tmp_path, models):
    import datasets


    folder = tmp_path / "qnli"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(qnli_rows(60, 0)),
                          "validation": datasets.Dataset.from_list(qnli_rows(20, 1))}).save_to_disk(str(folder))
    data = load_dataset("qnli", 0, data_dir=str(folder), model=f"hf:{models['teacher']}")
    assert data.n_classes == 2 and len(data.y_test) == 20 and len(data.y_train) + len(data.y_val) == 60
    ids, mask, types = data.x_train[0]
    assert types.max() == 1 and (types <= mask).all()  # the sentence is segment 1, padding is not
    assert (ids[mask == 0] == 0).all()  # [PAD] is id 0


@torch.no_grad()
def test_embed_then_body_is_the_original_transformer(models):
    """Position (and token type) embeddings are added once: body(embed(x)) equals the HF forward."""
    from transformers import AutoModelForSequenceClassification

    from sprkd_cli.models import build_model

    for name in ("teacher", "distil"):
        torch.manual_seed(0)
        wrapped = build_model(f"hf:{models[name]}", (3, 10), 2).eval()
        torch.manual_seed(0)
        original = AutoModelForSequenceClassification.from_pretrained(models[name], num_labels=2).eval()
        ids = torch.randint(5, 30, (4, 10))
        mask = torch.ones_like(ids)
        mask[:, 7:] = 0
        types = torch.zeros_like(ids)
        types[:, 4:7] = 1
        x = torch.stack([ids, mask, types], dim=1)
        extra = {"token_type_ids": types} if name == "teacher" else {}
        expected = original(input_ids=ids, attention_mask=mask, **extra).logits
        assert torch.allclose(wrapped(x), expected, atol=1e-5)
        vectors, vmask = wrapped.vectorise(x)
        assert vectors.shape == (4, 10, 32) and torch.equal(vmask, mask)
        assert torch.allclose(wrapped.from_vectors(vectors, vmask), expected, atol=1e-5)


def test_bad_text_input_is_one_line(db, tmp_path, models):
    wrong = write_csv(tmp_path / "wrong", {"train": [{"text": "good", "y": 1}] * 4,
                                           "validation": [{"text": "bad", "y": 0}] * 2})
    result = sprkd(db, "train-teacher", "--dataset", "sst2", "--data-dir", str(wrong), "--model",
                   f"hf:{models['teacher']}", *TRAIN)
    assert_user_error(result, "sst2 needs sentence, label", "missing: sentence, label")
    # a name that is no local folder, offline
    result = sprkd(db, "train-teacher", "--dataset", "sst2", "--data-dir", str(sst2_dir(tmp_path / "g")),
                   "--model", "hf:no-such-org/no-such-model", *TRAIN)
    assert_user_error(result, "cannot load transformer 'no-such-org/no-such-model'", "pass a local path")
    # no files and no hub: an answer at once, not a hang
    result = sprkd(db, "train-teacher", "--dataset", "qnli", "--model", f"hf:{models['teacher']}", *TRAIN)
    assert_user_error(result, "no qnli files", "offline", "--data-dir")
    # a text dataset with a vision model
    result = sprkd(db, "train-teacher", "--dataset", "sst2", "--data-dir", str(tmp_path / "g"), "--model", "mlp")
    assert_user_error(result, "sst2 is a text dataset", "hf:")
    assert open_test_store(db).list_runs() == []


def test_sage_student_of_another_width_is_refused(db, tmp_path, models):
    glue = sst2_dir(tmp_path / "glue")
    data = ["--dataset", "sst2", "--data-dir", str(glue)]
    teacher = sprkd_json(db, "train-teacher", *data, "--model", f"hf:{models['teacher']}", "--epochs", "1")
    result = sprkd(db, "distill", "--method", "sage", *data, "--student", f"hf:{models['narrow']}",
                   "--teacher", teacher["run_id"], *TRAIN)
    assert_user_error(result, "teacher's embed width is 32", "student's body takes width 16")
    assert [r.kind for r in open_test_store(db).list_runs()] == ["teacher"]


@pytest.mark.slow
def test_sage_on_text_stops_and_resumes_to_the_uninterrupted_run(db, tmp_path, models):
    """Token sequences keep synthetic points as recipes (anchor, neighbour, u): a run stopped after a round
    resumes from that pool to exactly the numbers and weights of the run never stopped."""
    from test_resume import assert_same, recorded, stopped_copy

    data = ["--dataset", "sst2", "--data-dir", str(sst2_dir(tmp_path / "glue"))]
    teacher = sprkd_json(db, "train-teacher", *data, "--model", f"hf:{models['teacher']}", *TRAIN)
    reference = sprkd_json(db, "distill", "--method", "sage", *data, "--student", f"hf:{models['student']}",
                           "--teacher", teacher["run_id"], "--sage-rounds", "2", "--epochs", "4", "--lr", "5e-3",
                           "--batch-size", "32")["run_id"]
    stopped = stopped_copy(db, reference, at_epoch=3)  # its state: after epoch 2, the first round in its pool
    assert sprkd_json(db, "distill", "--resume", stopped)["status"] == "finished"
    store = open_test_store(db)
    assert [e.epoch for e in store.events(stopped) if e.kind == "sage_round"] == [2, 3]
    assert_same(recorded(store, reference), recorded(store, stopped))


@pytest.mark.slow
def test_a_text_sage_state_of_the_older_form_is_refused_before_anything_is_touched(db, tmp_path, models):
    """States saved before recipes held the synthetic sentences' vectors: resuming one is refused in one
    line, before the run's records are touched (and compare would train the run afresh)."""
    from test_resume import stopped_copy

    from sprkd_cli.engine.state import load_state, save_state
    from sprkd_cli.services.training import STATE_FILE

    data = ["--dataset", "sst2", "--data-dir", str(sst2_dir(tmp_path / "glue"))]
    teacher = sprkd_json(db, "train-teacher", *data, "--model", f"hf:{models['teacher']}", *TRAIN)
    reference = sprkd_json(db, "distill", "--method", "sage", *data, "--student", f"hf:{models['student']}",
                           "--teacher", teacher["run_id"], "--sage-rounds", "1", "--epochs", "3", "--lr", "5e-3",
                           "--batch-size", "32")["run_id"]
    stopped = stopped_copy(db, reference, at_epoch=3)
    store = open_test_store(db)
    path = Path(store.get_run(stopped).artifact_dir) / STATE_FILE
    state = load_state(path)
    pool = state["method"]
    assert set(pool) == {"rounds_done", "syn_anchors", "syn_neighbours", "syn_u", "syn_p", "syn_neg_entropy"}
    n = len(pool["syn_p"])
    state["method"] = {"rounds_done": 1, "syn_vectors": torch.zeros(n, 4, 32), "syn_mask": torch.ones(n, 4),
                       "syn_p": pool["syn_p"], "syn_neg_entropy": pool["syn_neg_entropy"]}
    save_state(state, path)
    before = [(m.step, m.name, m.value) for m in store.metrics([stopped])]
    assert_user_error(sprkd(db, "distill", "--resume", stopped), f"run {stopped} cannot be resumed",
                      "saved by an older sprkd")
    assert [(m.step, m.name, m.value) for m in store.metrics([stopped])] == before
    assert store.get_run(stopped).status == "failed"


def test_sage_keeps_no_token_vectors_of_the_whole_training_set(tmp_path, models):
    """Memory: the real vectors are recomputed per batch and synthetic ones kept as recipes, so nothing
    of size n·L·H is held; what a batch gets equals the teacher embed's output."""
    from sprkd_cli.methods import declared_options
    from sprkd_cli.methods.sage.method import SAGE
    from sprkd_cli.models import build_model

    data = load_dataset("sst2", 0, data_dir=str(sst2_dir(tmp_path / "glue")), model=f"hf:{models['teacher']}")
    teacher = build_model(f"hf:{models['teacher']}", data.input_shape, data.n_classes).eval()
    student = build_model(f"hf:{models['student']}", data.input_shape, data.n_classes)
    sage = SAGE(declared_options("sage", {}), teacher, data)
    sage.setup(student, seed=0, emit=lambda *a, **k: None)
    sage.run_round(student, 2, 0)
    n, length = data.x_train.shape[0], data.x_train.shape[2]
    held = [t for t in vars(sage).values() if isinstance(t, torch.Tensor)] + \
        [t for t in vars(sage.pool).values() if isinstance(t, torch.Tensor)]
    assert sage.real.stored is None and sage.pool.vectors is None and len(sage.pool) > 0
    assert max(t.numel() for t in held) < n * length  # targets and recipes only, not n × L × 32 numbers
    index = torch.tensor([3, 0, 7])
    vectors, mask = sage.real.get(index)
    with torch.no_grad():
        expected, expected_mask = teacher.vectorise(data.x_train[index])
    assert torch.equal(vectors, expected) and torch.equal(mask, expected_mask)
    # a synthetic point made again is the interpolation of its anchor's and neighbour's vectors
    (va, _), (vj, _) = sage.real.get(sage.pool.anchors[:1]), sage.real.get(sage.pool.neighbours[:1])
    made, _ = sage.pool.get(torch.tensor([0]))
    assert torch.allclose(made, va + float(sage.pool.u[0]) * (vj - va), atol=1e-6)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("which", ["teacher", "distil"])
def test_padding_mask_goes_in_as_the_attention_kind_takes_it_without_a_read_back(models, which, attention):
    """The body hands the model a [n, 1, 1, L] mask it passes through: logits identical to transformers'
    own mask (padded or not, under bf16 autocast too), and no tensor read back to the host in the forward
    (transformers' `mask.all()`: a GPU sync per step)."""
    from sprkd_cli.models.hf import HFClassifier

    model = HFClassifier(str(models[which]), 2, (3, 12)).eval()
    model.body.model.config._attn_implementation = attention
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, len(VOCAB), (6, 12), generator=generator)
    padded = torch.ones(6, 12, dtype=torch.long)
    padded[:3, 8:] = 0
    vectors = model.embed(torch.stack([ids, padded, torch.zeros_like(ids)], 1))
    for mask in (padded, torch.ones_like(padded)):
        own = model.body.model(inputs_embeds=vectors, attention_mask=mask).logits
        assert torch.equal(model.body(vectors, mask), own)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(model.body(vectors, padded), model.body.model(inputs_embeds=vectors,
                                                                          attention_mask=padded).logits)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        model.body(vectors, padded)
    assert not [e.name for e in prof.events() if e.name in ("aten::_local_scalar_dense", "aten::is_nonzero")]
