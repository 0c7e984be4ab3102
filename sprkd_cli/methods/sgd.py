"""The no-teacher control: cross-entropy on the labels alone."""

import torch.nn.functional as F

from .base import Method


class SGD(Method):
    name = "sgd"
    takes_augmented = True

    def __init__(self, options: dict, teacher=None, data=None, augmented: bool = False):
        pass

    def loss(self, model, x, y, index):
        return F.cross_entropy(model(x), y)
