"""Interrupting a run mid-way, as a crash or Ctrl-C would, to test that it resumes from its checkpoint."""

from __future__ import annotations

import contextlib

from ies import Config, train


class Interrupt(Exception):
    """Raised by :func:`interrupted` at the end of the chosen epoch, before that epoch is checkpointed."""


def interrupted(cfg: Config, epoch: int, **kwargs) -> None:
    """Train ``cfg`` (into ``cfg.output``) and stop it at the end of epoch ``epoch`` (1-based): its checkpoint
    then holds epochs ``1 .. epoch - 1``. ``kwargs`` go to :func:`ies.train` (``dataset=``)."""

    def stop(done, model, tracker):
        if done == epoch:
            raise Interrupt

    with contextlib.suppress(Interrupt):
        train(cfg, on_epoch_end=stop, **kwargs)
