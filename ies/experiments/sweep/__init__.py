"""Sweeps: a grid of :class:`~ies.training.config.Config` overrides, every run in its own process, one table of results.

::

    from ies import Config
    from ies.experiments.sweep import run_sweep

    results = run_sweep(Config(epochs=30), grid={"threshold": [0, 1e-3, 1e-2], "seed": [0, 1]},
                        output="runs/sweep", jobs=2, random_control=True)

or ``python -m ies sweep --grid threshold=0,1e-3,1e-2 --grid seed=0,1 --set epochs=30 --random-control``.

* The runs are the product of the ``grid`` axes, plus every extra ``point`` (a dict of overrides)
  crossed with the grid axes the point does not set itself: with ``grid={"seed": [0, 1]}`` each
  point runs with both seeds. A grid axis that is not a ``Config`` field stops the sweep before
  anything runs; a bad point is reported as ``invalid`` and the others go on.
* Each run's whole configuration is written to ``OUTPUT/<run_id>/config.json`` and trained by
  ``python -m ies.experiments.sweep.worker OUTPUT/<run_id>/config.json`` in its own process, at most ``jobs`` at
  once, each with an optional timeout. The run id lists the overrides in ``Config`` field order
  (``threshold=0.001_seed=0``), so the same point always lands in the same folder.
* A run whose ``metrics.json`` shows all its epochs done, for the same configuration, is not run
  again; an interrupted one resumes from its checkpoint. A run that fails is reported with the end
  of its stderr and the others go on.
* ``random_budget="@<run_id>"`` names the ``history.csv`` of another run of the sweep (so does a
  plain path to it): that reference runs first, its random control once it has finished.
  ``random_control`` adds such a matched-budget random twin to IES runs: the same overrides with
  ``selector="random"``, excluding in every epoch as many random samples as the IES run excluded.
* The table (``OUTPUT/results.csv``): one row per run with its id, its *setting* (the id without
  the seed), status, overrides, final and best test accuracy, backprop saved, wall time.

The pieces, one job each: :mod:`~ies.experiments.sweep.plan` (ids, grid, random controls),
:mod:`~ies.experiments.sweep.cache` (finished and resumable runs), :mod:`~ies.experiments.sweep.pool` (the processes),
:mod:`~ies.experiments.sweep.worker` (one run), :mod:`~ies.experiments.sweep.analysis` (tables over seeds),
:mod:`~ies.experiments.sweep.claims` (the paper's claims), :mod:`~ies.experiments.sweep.cli` (``python -m ies sweep``).
"""

from ...training.config import RUN_CONTROL_FIELDS
from .analysis import METRIC_COLUMNS, OK, aggregate, load_histories, paired_difference, paired_interval
from .claims import PAPER, paper_claims
from .cli import build_parser, main
from .plan import PlannedRun, expand, format_value, plan, run_id, setting_id
from .pool import run_sweep, worker_command

__all__ = [
    "METRIC_COLUMNS", "OK", "PAPER", "RUN_CONTROL_FIELDS", "PlannedRun", "aggregate", "build_parser", "expand",
    "format_value", "load_histories", "main", "paired_difference", "paired_interval", "paper_claims", "plan",
    "run_id", "run_sweep", "setting_id", "worker_command",
]
