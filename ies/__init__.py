"""Instance-dependent Early Stopping (Yuan, Lin, Feng, Han, Liu, ICLR 2025).

Stop back-propagating a training sample once it is *mastered*: once the second-order difference of
its loss across epochs stays below a threshold. The public pieces:

- :class:`MasteryTracker` - per-sample loss history and the per-epoch mastery decision;
- :mod:`ies.criteria` - finite differences and the two mastery rules as tensor functions;
- :class:`Config` and :func:`train` (from :mod:`ies.training`) - one training loop for the baseline,
  IES and the other selectors (:mod:`ies.selectors`), built from the steps of :mod:`ies.epoch`.
"""

from .config import Config
from .criteria import backward_difference, lookback, mastered_mask
from .tracker import MasteryTracker
from .training import RunResult, train

__version__ = "0.1.0"

__all__ = ["Config", "MasteryTracker", "RunResult", "backward_difference", "lookback", "mastered_mask", "train"]
