"""What a long computation is doing now, for whoever shows progress: `with doing("saddle check"):` tells
the listeners (`listening(callback)`) the label before the work and None after it. Without a listener it
costs nothing; it never changes what is computed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

_listeners: list[Callable[[str | None], None]] = []


@contextmanager
def doing(label: str) -> Iterator[None]:
    for listener in list(_listeners):
        listener(label)
    try:
        yield
    finally:
        for listener in list(_listeners):
            listener(None)


@contextmanager
def listening(listener: Callable[[str | None], None]) -> Iterator[None]:
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
