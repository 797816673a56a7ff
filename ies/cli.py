"""Command line: ``python -m ies train|compare|sweep|notebooks ...``.

The options of ``train`` and ``compare`` are derived from :class:`Config`: one ``--flag`` per field, its
help the field's docstring (parsed once), booleans as ``--x/--no-x``. Plain argparse rather than a
library such as tyro: values are cast by :meth:`Config.from_dict`, the same code that casts papermill's
strings, so the CLI, notebooks and sweeps share one set of checks and messages (the field named, a
suggestion for a typo), and argparse's own errors stay one line with exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import sys
from pathlib import Path

from .experiments import sweep
from .experiments.group_report import GroupReport
from .experiments.timing import pair_wall_clock
from .training import faults
from .training.checkpoint import write_json
from .training.config import Config, field_docs
from .training.loop import train
from .training.presets import PRESETS, config_with_preset

EXIT_CODES = f"""exit codes:
  0    the run finished
  {faults.EXIT_BAD_INPUT}    a bad input, found before training where it can be (one line: the option, path or file, and
       what was expected); a finished run's folder is left byte for byte as it was
  {faults.EXIT_DIVERGED}    the run diverged (its mean training loss was not finite; see --allow-nonfinite): its folder
       holds every epoch up to the failure, metrics.json says why it stopped
  {faults.EXIT_INTERRUPTED}  interrupted (Ctrl-C): continue with --resume
  1    anything else (a bug: with a traceback)

A new run into a folder that holds another run is refused: pass --resume to continue it or --overwrite
to replace it."""


def _add_config_options(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    docs = field_docs()
    for f in dataclasses.fields(Config):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{docs.get(f.name, '')} (default: {f.default!r})".replace("%", "%%")
        if f.type in ("bool", bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=help_text)


def _config_from(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> Config:
    names = {f.name for f in dataclasses.fields(Config)} - set(skip)
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    return config_with_preset(getattr(args, "preset", None), **given)  # explicit options override the preset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ies", description="Instance-dependent Early Stopping",
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train_cmd = sub.add_parser("train", help="train one run (baseline with --threshold 0) and write its results",
                               epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_options(train_cmd)
    compare = sub.add_parser("compare", help="baseline (threshold 0) and IES on the same seed, then a table",
                             epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_options(compare, skip=("output", "resume"))
    compare.add_argument("--output", default="runs/compare", help="folder for the two runs (default: runs/compare)")
    for cmd in (train_cmd, compare):
        cmd.add_argument("--preset", default=None, metavar="NAME",
                         help=f"start from a named set of values ({', '.join(PRESETS)}; ies/training/presets.py); "
                              "options given explicitly override it")
    parser.commands = {"train": train_cmd, "compare": compare}
    sub.add_parser("notebooks", help="run the course notebooks with papermill (see --help of it)", add_help=False)
    sub.add_parser("sweep", help="run a grid of configurations, one process each (see --help of it)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "notebooks":
        from .course.runner import main as notebooks_main  # needs the `course` extra (papermill, jupyter)

        return notebooks_main(argv[1:])
    if argv and argv[0] == "sweep":
        return sweep.main(argv[1:])
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        options = [o for a in parser.commands[args.command]._actions for o in a.option_strings]
        hint = difflib.get_close_matches(unknown[0].split("=")[0], options, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        parser.exit(2, f"error: unrecognized argument {unknown[0]!r}{suggestion}\n")
    try:
        cfg = _config_from(args) if args.command == "train" else _config_from(args, skip=("output", "resume"))
        if args.command == "train":
            # under torchrun: every rank trains its share, rank 0 writes and prints
            result = train(cfg, observers=[GroupReport()])
            keys = ("test_accuracy", "best_test_accuracy", "backprop_saving", "compute_saving", "wall_time_s")
            if os.environ.get("RANK", "0") == "0":
                print(json.dumps({k: result.metrics[k] for k in keys}, indent=2))
            return 0
        return _compare(cfg, Path(args.output))
    except FloatingPointError as e:  # diverged: its folder holds every epoch up to the failure
        parser.exit(faults.EXIT_DIVERGED, f"error: {faults.one_line(e)}\n")
    except (FileNotFoundError, ValueError) as e:  # bad values, paths, data, checkpoints, offline datasets, mismatch
        parser.exit(faults.EXIT_BAD_INPUT, f"error: {faults.one_line(e)}\n")
    except KeyboardInterrupt:
        parser.exit(faults.EXIT_INTERRUPTED, "error: interrupted; continue the run with --resume\n")


def _compare(cfg: Config, out: Path) -> int:
    threshold = cfg.threshold if cfg.threshold > 0 else 1e-3
    runs = {
        "baseline": train(cfg.replace(threshold=0.0, output=str(out / "baseline")), observers=[GroupReport()]),
        "ies": train(cfg.replace(threshold=threshold, output=str(out / "ies")), observers=[GroupReport()]),
    }
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 alone prints
        return 0
    print(f"\n{'method':<10}{'test acc':>10}{'best acc':>10}{'backprop saved':>16}{'compute saved':>15}"
          f"{'wall s':>9}")
    for name, r in runs.items():
        m = r.metrics
        print(f"{name:<10}{m['test_accuracy']:>10.4f}{m['best_test_accuracy']:>10.4f}"
              f"{m['backprop_saving']:>16.1%}{m['compute_saving']:>15.1%}{m['wall_time_s']:>9.1f}")
    # a wall-clock ratio only after its calibration (the epochs of identical work must take the same time)
    clock = pair_wall_clock(runs["baseline"], runs["ies"])
    print(f"\n{clock.sentence()}")
    write_json(out / "timing.json", clock.to_dict())
    print(f"\nresults in {out}/baseline and {out}/ies (history.csv, metrics.json), the timing in {out}/timing.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
