"""Errors a user can cause: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A mistake in what the user asked for (unknown name, missing file, bad value)."""


class Diverged(Exception):
    """Training produced a non-finite loss; the run ends as failed."""

    def __init__(self, step: int, epoch: int, value: float):
        super().__init__(f"loss became {value} at step {step} (epoch {epoch})")
        self.step = step
        self.epoch = epoch
        self.value = value


def unknown_name(kind: str, name: str, valid) -> UserError:
    return UserError(f"unknown {kind} '{name}'; valid {kind}s: {', '.join(sorted(valid))}")
