"""The method: the mastery rule and the tracker that applies it, needing only torch.

A reading path through IES, in this order (about 690 lines, the tracker read whole):

1. :mod:`ies.method.criteria` - the rule on ``(N, T)`` loss histories: the order-N backward difference and
   both mastery rules (the paper's and the authors' code's), for every sample at once;
2. :mod:`ies.method.plain` - the same rules in plain Python for one sample, straight from their definitions;
3. :class:`ies.method.tracker.MasteryTracker` - ``record`` (one epoch's losses into a ring buffer on the device)
   and ``step`` (the decision for every sample, so a mastered sample can come back);
4. :mod:`ies.selectors.ies` - the IES selector: who trains (not mastered), who is only forwarded (mastered);
5. :func:`ies.training.loop.run_epoch` - one epoch: plan, train, track, decide, evaluate.

Beside them: :mod:`~ies.method.replay` (the rule replayed on a recorded loss matrix),
:mod:`~ies.method.recheck` (when excluded samples are re-checked), :mod:`~ies.method.cap` (at most a share
of each class mastered), :mod:`~ies.method.sharded` (the tracker split over ranks), and, for IES in your
own loop, :mod:`~ies.method.generic` (samplers over the active set) and :mod:`~ies.method.distributed`.
"""

from .criteria import backward_difference, lookback, mastered_mask
from .tracker import MasteryTracker

__all__ = ["MasteryTracker", "backward_difference", "lookback", "mastered_mask"]
