"""Dead units of an injected ASR, and giving them the student's own initial weights (`--asr-revive`).

A unit (an output channel of a convolution, an output of a linear layer) whose ReLU is never positive on
the probe set is dead: no gradient reaches its weights, so training never brings it back. Cropping a
teacher's layers to the student's shapes drops part of each unit's inputs, and averaging teachers from
different initialisations blurs their filters; either can leave a unit's pre-activation below zero
everywhere. Reviving gives each dead unit's incoming weights their values from the student's own seeded
initialisation and a zero bias (a negative initial bias can keep a unit dead on the small activations an
averaged ASR passes on), layer by layer from the input.
Only ReLU modules (`nn.ReLU`) are watched, each fed by the Conv/Linear module that ran last before it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ...hessian import ProbeSet
from ...models.modes import train_mode

LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@torch.no_grad()
def dead_units(model: nn.Module, probe: ProbeSet) -> list[tuple[nn.Module, torch.Tensor]]:
    """For each ReLU module, in the order they run: (the layer feeding it, mask of its dead output units)."""
    order: list = []
    alive: dict[int, torch.Tensor] = {}

    def layer_hook(module, args, output):
        order.append(module)

    def relu_hook(module, args, output):
        feeder = next((m for m in reversed(order) if isinstance(m, LAYERS)), None)
        if feeder is None:
            return
        units = output.transpose(0, 1).reshape(output.shape[1], -1) if output.dim() > 2 else output.T
        positive = (units > 0).any(dim=1)
        key = id(feeder)
        alive[key] = alive.get(key, torch.zeros_like(positive)) | positive
        feeders[key] = feeder

    feeders: dict[int, nn.Module] = {}
    handles = [m.register_forward_hook(layer_hook) for m in model.modules() if isinstance(m, LAYERS)]
    handles += [m.register_forward_hook(relu_hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with train_mode(model, False):
            for x, _ in probe.batches:
                order.clear()
                model(x)
    finally:
        for h in handles:
            h.remove()
    return [(feeders[k], ~alive[k]) for k in alive]


@torch.no_grad()
def revive(model: nn.Module, targets: list[torch.Tensor], probe: ProbeSet) -> list[dict]:
    """Change `targets` (one per trainable parameter of `model`, in order): layer by layer from the input, the
    units dead at the targets on `probe` take `model`'s own (initial) weights and a zero bias. Returns, for
    each layer that had dead units, {"layer", "units", "dead", "revived"} (a unit dead under its own
    initial weights too stays dead)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    index = {id(p): i for i, (_, p) in enumerate(named)}
    names = {m: n for n, m in model.named_modules()}
    at_targets = copy.deepcopy(model)
    for p, t in zip((p for p in at_targets.parameters() if p.requires_grad), targets):
        p.copy_(t)
    originals = dict(zip((id(m) for m in at_targets.modules()), model.modules()))
    found: list[dict] = []
    for position in range(len(dead_units(at_targets, probe))):
        layer, dead = dead_units(at_targets, probe)[position]
        if not dead.any():
            continue
        original = originals[id(layer)]
        for attr in ("weight", "bias"):
            own, theirs = getattr(original, attr, None), getattr(layer, attr, None)
            if own is None or id(own) not in index:
                continue
            fresh = own[dead] if attr == "weight" else torch.zeros_like(own[dead])
            theirs[dead] = fresh
            targets[index[id(own)]][dead] = fresh
        still = dead_units(at_targets, probe)[position][1]
        found.append({"layer": names[original], "units": int(dead.numel()), "dead": int(dead.sum()),
                      "revived": int((dead & ~still).sum())})
    return found
