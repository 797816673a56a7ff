"""Instance-dependent Early Stopping (Yuan, Lin, Feng, Han, Liu, ICLR 2025).

Stop back-propagating a training sample once it is *mastered*: once the second-order difference of
its loss across epochs stays below a threshold. The package is layered; nothing imports a layer above
it (the ``import-linter`` contract in ``pyproject.toml``):

- :mod:`ies.method` - the rule and the tracker (torch only; ``from ies import MasteryTracker`` loads
  this alone);
- :mod:`ies.data`, :mod:`ies.models` - data sets and networks (beside each other, beside the method);
- :mod:`ies.selectors` - who trains each epoch: IES and its peers, one registry;
- :mod:`ies.training` - :class:`Config` and :func:`train`, the built-in loop;
- :mod:`ies.experiments` - the course's experiments (sweeps, statistics, peers, sharpness, transfer);
- :mod:`ies.course` - the notebooks' tooling; :mod:`ies.cli` - the command line on top.
"""

from .method.criteria import backward_difference, lookback, mastered_mask
from .method.tracker import MasteryTracker

__version__ = "0.1.0"

_LAZY = {"Config": "ies.training.config", "train": "ies.training.loop", "RunResult": "ies.training.loop"}


def __getattr__(name: str):
    # the training loop (pandas, tqdm, torchvision, ...) loads on first use, so the tracker stays light
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ies' has no attribute {name!r}")


__all__ = ["Config", "MasteryTracker", "RunResult", "backward_difference", "lookback", "mastered_mask", "train"]
