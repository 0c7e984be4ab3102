"""Transformers for sequence classification (`hf:NAME_OR_PATH`), split into `embed` and `body`.

Token inputs are LongTensors [n, 3, L]: input ids, attention mask and token type ids (see
data/text.py). `embed` is the model's own embedding module (word + position (+ token type)
embeddings, LayerNorm, dropout); `body` is the same model with that module swapped for a
pass-through, so body(embed(x)) runs the original network and position embeddings are added
exactly once. Vectors are fed to the encoder directly, never re-embedded through `inputs_embeds`.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import UserError
from .base import EmbedBody

PREFIX = "hf:"


def hf_name(spec: str) -> str | None:
    """The name or path of an `hf:` spec, None for the other models."""
    if not spec.startswith(PREFIX):
        return None
    name = spec[len(PREFIX):].strip()
    if not name:
        raise UserError("hf: needs a model name or a local directory, e.g. hf:distilbert-base-uncased or hf:./my-model")
    return name


def first_layers(folder: Path, layers: int, out: Path) -> Path:
    """A model folder at `out` of links to `folder`'s files whose config keeps the first `layers` layers
    (BERT's num_hidden_layers, DistilBERT's n_layers): from_pretrained then loads those layers' weights,
    a student of the teacher's width. UserError when `layers` is not fewer than the model's."""
    import json

    config = json.loads((folder / "config.json").read_text())
    key = "n_layers" if "n_layers" in config else "num_hidden_layers"
    if not 1 <= layers < config.get(key, 0):
        raise UserError(f"{folder}: keep 1 to {config.get(key, 0) - 1} of its {config.get(key, 0)} layers, "
                        f"not {layers}")
    out.mkdir(parents=True, exist_ok=True)
    for item in folder.iterdir():
        link = out / item.name
        if item.name != "config.json" and not link.exists():
            link.symlink_to(item.resolve())
    (out / "config.json").write_text(json.dumps(config | {key: layers}, indent=2))
    return out


def _quiet_transformers():
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def _cannot_load(name: str, exc: BaseException) -> UserError:
    if Path(name).exists():
        return UserError(f"cannot load transformer '{name}': "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    return UserError(
        f"cannot load transformer '{name}' (not a local directory, and the Hugging Face hub is unreachable or "
        f"has no such model): pass a local path saved with save_pretrained, e.g. hf:/path/to/{name.split('/')[-1]}"
    )


def _hub_unreachable(name: str) -> bool:
    """True when `name` is no local directory and the hub cannot be asked (offline flags set)."""
    if Path(name).is_dir():
        return False
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def load_tokenizer(name: str):
    transformers = _quiet_transformers()
    if _hub_unreachable(name):
        raise _cannot_load(name, OSError("offline"))
    try:
        return transformers.AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError, KeyError) as exc:
        raise _cannot_load(name, exc) from None


class _PassThrough(nn.Module):
    """Stands in for the model's embedding module: returns the vectors it is given as `inputs_embeds`
    (by keyword, or at that argument's position in the original module's signature)."""

    def __init__(self, original: nn.Module):
        super().__init__()
        self.position = list(inspect.signature(original.forward).parameters).index("inputs_embeds")

    def forward(self, *args, **kwargs):
        return kwargs["inputs_embeds"] if "inputs_embeds" in kwargs else args[self.position]


class TokenEmbed(nn.Module):
    """The model's embedding module applied to [n, 3, L] token inputs."""

    def __init__(self, embeddings: nn.Module):
        super().__init__()
        self.embeddings = embeddings
        self.token_types = "token_type_ids" in inspect.signature(embeddings.forward).parameters

    def forward(self, x: Tensor) -> Tensor:
        extra = {"token_type_ids": x[:, 2]} if self.token_types else {}
        return self.embeddings(input_ids=x[:, 0], **extra)


class SequenceBody(nn.Module):
    """Encoder and classification head of a model whose embedding module was taken out."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, vectors: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.model(inputs_embeds=vectors, attention_mask=self.attention_bias(attention_mask, vectors)).logits

    def attention_bias(self, mask: Tensor | None, vectors: Tensor) -> Tensor | None:
        """The [n, L] padding mask (1: a token, 0: padding) as the [n, 1, 1, L] mask the model's attention
        takes, which transformers passes through as it is: booleans for torch's scaled_dot_product_attention
        ("sdpa"), 0 or the dtype's lowest value to add to the scores for "eager". transformers would build the
        same from the [n, L] mask, but first asks whether any token is padding (`mask.all()`), a read back to
        the host that waits for the GPU's queue at every step. Other attention kinds get the [n, L] mask."""
        kind = getattr(self.model.config, "_attn_implementation", None)
        if mask is None or mask.dim() != 2 or kind not in ("sdpa", "eager"):
            return mask
        keep = mask[:, None, None, :].bool()
        if kind == "sdpa":
            return keep
        low = torch.finfo(vectors.dtype).min
        return torch.zeros(keep.shape, dtype=vectors.dtype, device=keep.device).masked_fill_(~keep, low)


def embed_config(model: HFClassifier) -> str:
    """The model's transformers config as JSON: enough to build its embedding module again."""
    return model.body.model.config.to_json_string()


def embed_from_config(config_json: str) -> TokenEmbed:
    """A TokenEmbed of the architecture `config_json` describes (weights left to be loaded)."""
    import json

    transformers = _quiet_transformers()
    values = json.loads(config_json)
    config = transformers.AutoConfig.for_model(values.pop("model_type"), **values)
    return TokenEmbed(transformers.AutoModelForSequenceClassification.from_config(config).base_model.embeddings)


class HFClassifier(EmbedBody):
    def __init__(self, name: str, n_classes: int, input_shape: tuple[int, ...] | None = None):
        super().__init__()
        if input_shape is not None and (len(input_shape) != 2 or input_shape[0] != 3):
            raise UserError(f"hf:{name} reads token sequences; use a text dataset (sst2, qnli), not one of shape "
                            f"{input_shape}")
        transformers = _quiet_transformers()
        if _hub_unreachable(name):
            raise _cannot_load(name, OSError("offline"))
        try:
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                name, num_labels=n_classes, ignore_mismatched_sizes=True)
        except (OSError, ValueError, KeyError) as exc:
            raise _cannot_load(name, exc) from None
        base = model.base_model
        self.name = name
        self.embed = TokenEmbed(base.embeddings)
        base.embeddings = _PassThrough(base.embeddings)
        self.body = SequenceBody(model)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(self.embed(x), x[:, 1])

    def vectorise(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.embed(x), x[:, 1]

    def from_vectors(self, vectors: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.body(vectors, mask)
