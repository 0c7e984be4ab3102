"""GLUE-format files and tiny transformers for the text tests: nothing comes from the network."""

from __future__ import annotations

import os
import random
from pathlib import Path

# Nothing in these tests may reach the Hugging Face hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
GOOD = ["good", "great", "fine", "lovely", "superb", "warm", "bright", "happy"]
BAD = ["bad", "awful", "poor", "dull", "grim", "sad", "cold", "weak"]
FILLER = ["the", "a", "film", "movie", "plot", "was", "is", "very", "quite", "story", "acting", "what", "who",
          "where", "did", "city", "river", "king", "born", "in", "built", "year", "?", "."]
VOCAB = SPECIAL + GOOD + BAD + FILLER


def sst2_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 9))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(GOOD if label else BAD))
        rows.append({"sentence": " ".join(words), "label": label})
    return rows


def qnli_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        topic = rng.choice(["city", "river", "king"])
        question = f"where was the {topic} built ?"
        other = topic if label == 0 else rng.choice([t for t in ("city", "river", "king") if t != topic])
        sentence = " ".join([rng.choice(FILLER) for _ in range(rng.randint(2, 6))] + [other, "built", "."])
        rows.append({"question": question, "sentence": sentence, "label": label})
    return rows


def write_csv(folder: Path, rows: dict[str, list[dict]]) -> Path:
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    for split, split_rows in rows.items():
        pd.DataFrame(split_rows).to_csv(folder / f"{split}.csv", index=False)
    return folder


def sst2_dir(folder: Path, n_train: int = 160, n_val: int = 40) -> Path:
    return write_csv(folder, {"train": sst2_rows(n_train, 0), "validation": sst2_rows(n_val, 1)})


def tiny_model(folder: Path, *, kind: str = "bert", hidden: int = 32, layers: int = 1, seed: int = 0) -> Path:
    """A BERT (or DistilBERT) sequence classifier from a config, with a WordPiece tokenizer over VOCAB."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig, BertTokenizer, DistilBertConfig

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    if kind == "bert":
        config = BertConfig(vocab_size=len(VOCAB), hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=64,
                            num_labels=2)
    else:
        config = DistilBertConfig(vocab_size=len(VOCAB), dim=hidden, n_layers=layers, n_heads=2,
                                  hidden_dim=2 * hidden, max_position_embeddings=64, num_labels=2)
    torch.manual_seed(seed)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    # transformers 5 takes the vocabulary as `vocab` (an unknown `vocab_file` leaves it empty: all [UNK])
    BertTokenizer(vocab=str(vocab), do_lower_case=True).save_pretrained(folder)
    return folder
