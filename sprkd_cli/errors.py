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


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived while a run trained: the run ends as interrupted and sprkd exits with
    128 + the signal's number. A BaseException, so that no `except Exception` swallows it."""

    def __init__(self, signum: int, run_id: str | None = None):
        super().__init__(signum, run_id)
        self.signum = signum
        self.run_id = run_id

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        import signal

        where = f"; run {self.run_id} ended as interrupted, its finished epochs are stored" if self.run_id else ""
        return f"interrupted by {signal.Signals(self.signum).name}{where}"


def os_error_message(exc: OSError) -> str:
    """An OSError as one line: the path (or paths) it concerns and the system's reason, e.g.
    "/data/x: File name too long"."""
    reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    if exc.filename is None:
        return reason
    where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else str(exc.filename)
    return f"{where}: {reason}"


def one_line(exc: BaseException) -> str:
    """Why something failed, in one line, as a failed run records it."""
    if isinstance(exc, OSError):
        return os_error_message(exc)
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def unknown_name(kind: str, name: str, valid) -> UserError:
    return UserError(f"unknown {kind} '{name}'; valid {kind}s: {', '.join(sorted(valid))}")
