"""sprkd: an experiment runner and result store for knowledge-distillation research."""

__version__ = "0.1.0"
