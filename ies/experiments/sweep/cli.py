"""``python -m ies sweep``: the sweep's command line (grid axes, extra points, base fields, a dry run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from ...training.config import Config
from .analysis import OK
from .plan import check_keys, plan
from .pool import run_sweep


def _pairs(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{what} must look like KEY=VALUE, got {text!r}")
    return key.strip().replace("-", "_"), value.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ies sweep",
        description="Run a grid of training configurations, one process each, and collect the results "
                    "into OUTPUT/results.csv. Finished runs are not run again; a failed run is reported "
                    "and the others go on.",
        epilog="example: python -m ies sweep --grid threshold=0,1e-3,1e-2 --grid seed=0,1 --set epochs=30 "
               "--random-control --output runs/sweep --jobs 2",
    )
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="an axis of the grid (a Config field and its values); repeat for more axes")
    parser.add_argument("--point", action="append", default=[], metavar="KEY=V[,KEY=V...]",
                        help="an extra run, crossed with the grid axes it does not set "
                             "(random_budget=@RUN_ID names another run's history.csv)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a field of the base configuration of every run (e.g. epochs=30)")
    parser.add_argument("--random-control", action="store_true",
                        help="add to each IES run a random run excluding the same number of samples per epoch")
    parser.add_argument("--output", default="runs/sweep", help="folder of the sweep (default: runs/sweep)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (default: 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per run (default: CPU cores / jobs)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before a run is killed")
    parser.add_argument("--rerun", action="store_true", help="run finished runs again")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the runs and the fields each one changes from the defaults, run nothing")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def _sweep_of(args: argparse.Namespace) -> tuple[Config, dict[str, list[str]], list[dict[str, str]]]:
    """The base configuration, grid and points of the command line; a typo in a key, a malformed
    pair or a bad value raises ``ValueError`` / ``ArgumentTypeError`` (one line) before anything runs."""
    grid: dict[str, list[str]] = {}
    for text in args.grid:
        key, values = _pairs(text, "--grid")
        if key in grid:
            raise ValueError(f"--grid {key} given twice")
        grid[key] = [v for v in values.split(",") if v != ""]
    check_keys(grid, "--grid")
    points = [dict(_pairs(p, "--point") for p in text.split(",")) for text in args.point]
    for point in points:
        check_keys(point, "--point")
    base = Config.from_dict(dict(_pairs(s, "--set") for s in args.set))
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    if args.timeout is not None and not args.timeout > 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {args.timeout}")
    return base, grid, points


def describe(cfg: Config) -> str:
    """The fields of ``cfg`` that differ from ``Config()``, as ``key=value`` (the run's ``output`` last)."""
    default = Config().to_dict()
    changed = {k: v for k, v in cfg.to_dict().items() if v != default[k] and k != "output"}
    return " ".join([*(f"{k}={v}" for k, v in changed.items()), f"output={cfg.output}"])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        base, grid, points = _sweep_of(args)
    except (ValueError, argparse.ArgumentTypeError) as e:
        parser.exit(2, f"error: {e}\n")
    if args.dry_run:
        for r in plan(base, grid, points, output=args.output, random_control=args.random_control):
            after = f"  (after {r.depends_on})" if r.depends_on else ""
            print(f"{r.run_id}{after}\n    " + (describe(r.config) if r.config else f"invalid: {r.error}"))
        return 0
    table = run_sweep(base, grid, points, output=args.output, jobs=args.jobs, random_control=args.random_control,
                      rerun=args.rerun, threads=args.threads, timeout=args.timeout, progress=args.progress)
    show = table[["run_id", "status", "test_accuracy", "best_test_accuracy", "backprop_saving", "wall_time_s"]]
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(show.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    bad = table[~table["status"].isin(OK)]
    for row in bad.itertuples():
        print(f"\n{row.run_id}: {row.status}\n{row.error}", file=sys.stderr)
    print(f"\n{len(table) - len(bad)} of {len(table)} runs have results: {Path(args.output) / 'results.csv'}")
    return 1 if len(bad) else 0
