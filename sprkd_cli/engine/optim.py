"""The base optimiser and learning-rate schedule, the same for every method."""

import functools
import inspect

import torch

from ..errors import UserError


def make_optimizer(name: str, params, *, lr: float, weight_decay: float, momentum: float, betas,
                   fused: bool = False) -> torch.optim.Optimizer:
    """`fused` (a GPU's parameters): Adam and AdamW as one fused kernel per step, their step counts on the
    device (no read back to the host per parameter); on the CPU the default implementation, whose numbers
    sprkd's tests pin."""
    extra = {"fused": True} if fused else {}
    if name == "adamw":
        return eager(torch.optim.AdamW)(params, lr=lr, betas=betas, weight_decay=weight_decay, **extra)
    if name == "adam":
        return eager(torch.optim.Adam)(params, lr=lr, betas=betas, weight_decay=weight_decay, **extra)
    if name == "sgd":
        return eager(torch.optim.SGD)(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise UserError(f"unknown optimizer '{name}'; valid optimizers: adam, adamw, sgd")


@functools.cache
def eager(cls: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """`cls` as a subclass whose methods are torch's own, called without the wrappers that keep
    torch.compile from tracing them. Those wrappers import torch.compile's machinery (torch._dynamo: about
    1.3 s of a command's start-up on 2 CPU cores) at a process's first optimiser, although outside
    torch.compile they only call the method: `step` with gradients off (the optimiser is not
    differentiable), and add_param_group, zero_grad, state_dict and load_state_dict as they are. The
    same code runs, so the same numbers come out (tests/test_engine.py); sprkd compiles nothing.
    A differentiable optimiser, or a torch whose methods are not wrapped so, keeps torch's path."""
    step = inspect.unwrap(cls.step)
    plain = {name: inspect.unwrap(getattr(cls, name))
             for name in ("add_param_group", "zero_grad", "state_dict", "load_state_dict")}
    if step is cls.step or any(fn is getattr(cls, name) for name, fn in plain.items()):
        return cls

    def eager_step(self, closure=None):
        if self.defaults.get("differentiable"):
            return cls.step(self, closure)
        with torch.no_grad():
            return step(self, closure)

    name = f"Eager{cls.__name__}"
    methods = {"step": eager_step, **plain, "__doc__": cls.__doc__, "__module__": __name__, "__qualname__": name}
    return type(name, (cls,), methods)


def make_schedule(name: str, optimizer: torch.optim.Optimizer, total_steps: int):
    """Per-step schedule: cosine decay to 0 over the run, or constant."""
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise UserError(f"unknown schedule '{name}'; valid schedules: constant, cosine")
