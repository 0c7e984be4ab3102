"""Running out of memory while measuring a Hessian, told as one line that names the flag to lower."""

from __future__ import annotations

from ..errors import UserError


def is_out_of_memory(exc: BaseException) -> bool:
    """A MemoryError, torch's OutOfMemoryError (a GPU's), or the CPU allocator's RuntimeError."""
    if isinstance(exc, MemoryError):
        return True
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in str(exc) or "out of memory" in str(exc))


class out_of_memory_message:
    """Turns running out of memory inside the block into one UserError line naming --probe-micro-batch;
    `examples()` is the micro-batch in use (or the whole probe set's size)."""

    def __init__(self, examples) -> None:
        self.examples = examples

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or not is_out_of_memory(exc):
            return False
        try:
            size = int(self.examples())
        except Exception:
            size = 0
        held = f"{size} examples at once" if size else "its micro-batches"
        lower = f" (e.g. --probe-micro-batch {max(1, size // 4)})" if size > 1 else ""
        raise UserError(f"out of memory measuring the Hessian with {held}: lower --probe-micro-batch{lower}, or "
                        "--probe-size") from None
