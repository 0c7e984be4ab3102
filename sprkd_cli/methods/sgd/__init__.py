"""sgd: the no-teacher control, cross-entropy on the labels alone."""

from __future__ import annotations

from dataclasses import dataclass

from ..contract import MethodOptions


@dataclass
class SGDOptions(MethodOptions):
    name = "sgd"
    rank = 0
    plain = True

    @classmethod
    def load(cls):
        from .method import SGD

        return SGD


OPTIONS = SGDOptions
