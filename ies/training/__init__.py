"""The built-in training loop: :class:`Config`, :func:`train` and its :class:`RunResult`."""

from .config import Config
from .loop import RunResult, train

__all__ = ["Config", "RunResult", "train"]
