"""``python -m ies notebooks``: run every course notebook with papermill, in order, then a summary table.

Each ``notebooks/NN_name.ipynb`` runs with the parameters ``PROFILE``, ``DEVICE``, ``DATA_DIR``,
``SEED`` (when given) and ``OUTPUT_DIR = RUN_DIR/NN_name``; the executed notebook is saved as
``RUN_DIR/NN_name.ipynb``. The kernel is this Python (``sys.executable``), whatever ``python3``
kernelspec Jupyter would otherwise find, and runs in the repository root. The first failing notebook
stops the run, naming the notebook and the failing cell's error. Then every executed notebook is rendered
as ``RUN_DIR/NN_name.html`` with an index ``RUN_DIR/index.html`` (``--no-html``: not). ``--site DIR`` is the
teacher's one command: the run into ``DIR`` plus the module's README (glossary), ``INSTRUCTORS.md`` and
``paper-facts.md`` rendered as pages of the same site, all linked from ``DIR/index.html``.

The teacher's tools of :mod:`ies.course.colab` share the notebook selection: ``--student DIR`` writes copies
without the cells tagged ``solution`` (nothing runs); ``--colab-links [FILE]`` prints the "Open in Colab"
table (or rewrites it in FILE); ``--expected RUN_DIR ...`` writes the expected results of three or more
reference runs into ``INSTRUCTORS.md`` (:mod:`ies.course.expected`). The index also counts each notebook's
verdicts (:func:`ies.course.summary.tally_text`) and ``RUN_DIR/verdicts.csv`` holds the module's closing table.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty

try:
    import papermill as pm
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.channels import AsyncZMQSocketChannel
    from jupyter_client.manager import AsyncKernelManager
    from papermill.exceptions import PapermillExecutionError
    from traitlets import DottedObjectName, Type

    from . import colab as course
    from .summary import READERS, module_verdicts, tally_text
except ModuleNotFoundError as e:  # the course extra is not installed
    raise ModuleNotFoundError(
        f"`python -m ies notebooks` needs the course extra ({e.name} is missing): "
        "pip install 'instance-early-stopping[course]'"
    ) from e

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding ies/ (and notebooks/)


#: Longest single wait on a kernel socket, in seconds (see :class:`SlicedPollChannel`).
POLL_SLICE = 1.0


class SlicedPollChannel(AsyncZMQSocketChannel):
    """A kernel channel whose ``get_msg`` waits in slices of :data:`POLL_SLICE` seconds. zmq's
    asyncio poll can miss the wake-up of a message that has arrived (seen here on cells with
    ipywidgets: the execute reply was read only when the whole cell timeout ran out, 600 s later,
    jupyter/nbclient#312); every slice ends by checking the socket, so such a message is read at
    most a slice late."""

    async def get_msg(self, timeout: float | None = None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = POLL_SLICE if deadline is None else max(0.0, min(POLL_SLICE, deadline - time.monotonic()))
            if await self.socket.poll(int(wait * 1000)):
                return await self._recv()
            if deadline is not None and time.monotonic() >= deadline:
                raise Empty


class SlicedPollKernelClient(AsyncKernelClient):
    """The asyncio kernel client with :class:`SlicedPollChannel` for the replies and the outputs."""

    shell_channel_class = Type(SlicedPollChannel)
    iopub_channel_class = Type(SlicedPollChannel)


class ThisPythonKernelManager(AsyncKernelManager):
    """Starts the ``python3`` kernel with the interpreter running this process, so that the
    notebooks import the same ``ies`` (a ``python3`` kernelspec in the user's Jupyter folder may
    point at another Python); its client reads with :class:`SlicedPollKernelClient`."""

    client_class = DottedObjectName("ies.course.runner.SlicedPollKernelClient")
    client_factory = Type(SlicedPollKernelClient)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        if "ipykernel_launcher" in cmd:  # a Python kernel: use our interpreter, keep its arguments
            cmd[0] = sys.executable
            cmd.append("--IPKernelApp.log_level=ERROR")  # not the kernel's own warnings (cells' output is kept)
        return cmd


@dataclass
class NotebookResult:
    """The outcome of one notebook: ``status`` is ``ok``, ``failed`` or ``not run``."""

    name: str
    status: str = "not run"
    seconds: float = float("nan")
    metrics: dict = field(default_factory=dict)
    error: str = ""


def repo_root() -> Path:
    """The folder holding ``notebooks/``: the repository of this package (editable install) or else
    the current directory (a plain install run from a clone's root)."""
    for root in (PACKAGE_ROOT, Path.cwd()):
        if (root / "notebooks").is_dir():
            return root
    raise FileNotFoundError(
        f"no notebooks/ folder next to the package ({PACKAGE_ROOT}) or in the current directory ({Path.cwd()}); "
        "run from the repository root or pass --notebooks DIR"
    )


def find_notebooks(folder: Path, only: str = "") -> list[Path]:
    """``folder``'s ``NN_*.ipynb`` in name order, restricted to ``only`` (comma-separated numbers
    ``01,03`` or names ``01_finite_differences``) when given. An unknown entry is an error."""
    found = sorted(folder.glob(NOTEBOOK_GLOB))
    if not only:
        return found
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen = []
    for w in wanted:
        stem = w.removesuffix(".ipynb")
        match = [p for p in found if p.stem == stem or p.stem[:2] == stem.zfill(2)]
        if not match:
            names = ", ".join(p.stem for p in found) or "none"
            raise ValueError(f"--only: no notebook {w!r} in {folder} (there are: {names})")
        chosen += [p for p in match if p not in chosen]
    return sorted(chosen)


#: Longest time one cell may run, per profile (None: no limit). A cell that hangs (a lost kernel
#: message, a dead data source) then fails the run with a clear error instead of holding it forever.
CELL_TIMEOUT = {"smoke": 600, "teaching": 1800, "full": None}


def run_notebook(
    path: Path, out_dir: Path, parameters: dict, cwd: Path, progress: bool = True, cell_timeout: float | None = -1
) -> NotebookResult:
    """Execute ``path`` with papermill into ``out_dir/<name>.ipynb`` with ``OUTPUT_DIR =
    out_dir/<name>``; return its result (the cell's error on failure, never raising for it).
    ``cell_timeout`` in seconds (``None``: no limit; default: :data:`CELL_TIMEOUT` of the profile)."""
    name = path.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    notebook_out = out_dir / name
    params = {**parameters, "OUTPUT_DIR": str(notebook_out)}
    result = NotebookResult(name)
    timeout = CELL_TIMEOUT.get(str(params.get("PROFILE", "teaching")), None) if cell_timeout == -1 else cell_timeout
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(path), str(out_dir / f"{name}.ipynb"), parameters=params, kernel_name="python3",
            cwd=str(cwd), progress_bar=progress, kernel_manager_class=ThisPythonKernelManager,
            execution_timeout=timeout,
        )
        result.status = "ok"
    except PapermillExecutionError as e:
        result.status = "failed"
        first_line = next((line for line in str(e.source).splitlines() if line.strip()), "")
        result.error = f"cell {e.cell_index} (In [{e.exec_count}]: {first_line.strip()[:60]!r}): {e.ename}: {e.evalue}"
    except Exception as e:  # the kernel died, could not start, the notebook is unreadable, ...
        result.status = "failed"
        result.error = f"{type(e).__name__}: {e}"
    result.seconds = time.perf_counter() - start
    metrics_file = notebook_out / "metrics.json"
    if result.status == "ok" and metrics_file.exists():
        result.metrics = json.loads(metrics_file.read_text())
    return result


def key_metrics(metrics: dict, limit: int = 4) -> str:
    """The first ``limit`` top-level numbers of a ``metrics.json``, ``name=value``."""
    items = []
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float):
            text = "nan" if math.isnan(value) else f"{value:.4g}"
        else:
            text = str(value)
        items.append(f"{key}={text}")
        if len(items) == limit:
            break
    return "  ".join(items)


def summary_table(results: list[NotebookResult]) -> str:
    """A plain-text table: notebook, status, seconds, key metrics."""
    width = max([len("notebook")] + [len(r.name) for r in results])
    lines = [f"{'notebook':<{width}}  {'status':<8}{'seconds':>9}  key metrics"]
    for r in results:
        secs = "" if math.isnan(r.seconds) else f"{r.seconds:.1f}"
        lines.append(f"{r.name:<{width}}  {r.status:<8}{secs:>9}  {key_metrics(r.metrics)}")
    return "\n".join(lines)


def render_run(out: Path, results: list[NotebookResult], notebooks_dir: Path | None = None) -> Path:
    """Render every executed notebook of the run in ``out`` as HTML and write the index; return its path. With
    ``notebooks_dir`` (``--site``), its course pages (:data:`ies.course.colab.SITE_PAGES`: the module's README with
    the glossary, the instructor's guide, the paper facts) are rendered too and linked from the index."""
    for r in results:
        if r.status != "not run" and (out / f"{r.name}.ipynb").exists():
            try:
                course.render_html(out / f"{r.name}.ipynb")
            except Exception as e:  # a page that cannot be rendered must not hide the run's result
                print(f"warning: {r.name}.html not rendered: {type(e).__name__}: {e}", file=sys.stderr)
    verdicts, _ = module_verdicts(out)
    verdicts.to_csv(out / "verdicts.csv", index=False)  # the module's closing table, as the index counts it
    rows = [{"name": r.name, "status": r.status, "seconds": None if math.isnan(r.seconds) else r.seconds,
             "metrics": key_metrics(r.metrics),
             "verdicts": tally_text(verdicts[verdicts["notebook"] == r.name[:2]]) if r.name in READERS else ""}
            for r in results]
    pages = course.write_site_pages(out, notebooks_dir) if notebooks_dir is not None else []
    return course.write_index(out, rows, pages)


def write_student(notebooks: list[Path], folder: Path) -> int:
    """``--student``: the copies without solutions, and what was removed."""
    removed = course.write_student_copies(notebooks, folder)
    for name, count in removed.items():
        print(f"{name}: {count} solution cell(s) removed")
    print(f"student copies in {folder.resolve()}")
    return 0


def write_expected_results(run_dirs: list[str], instructors: Path) -> int:
    """``--expected``: the reference runs' ranges into ``instructors`` (:mod:`ies.course.expected`)."""
    from .expected import write_expected

    try:
        changed, table = write_expected(run_dirs, instructors)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{instructors}: {'expected results rewritten' if changed else 'already up to date'} "
          f"from {len(run_dirs)} runs (table: {table})")
    return 0


def print_colab_links(notebooks: list[Path], target: str, repository: str = "", branch: str = "") -> int:
    """``--colab-links``: print the table (``-``) or rewrite it in the file ``target``; ``repository`` /
    ``branch``: a fork's ``owner/name`` and branch instead of ``ies.course.colab.REPOSITORY`` / ``BRANCH``."""
    repository, branch = repository or course.REPOSITORY, branch or course.REVISION or course.BRANCH
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repository):
        print(f"error: --repository must be OWNER/NAME of a GitHub repository, got {repository!r}", file=sys.stderr)
        return 2
    if target == "-":
        print(course.colab_links(notebooks, repository, branch))
        return 0
    try:
        changed = course.update_links(target, notebooks, repository, branch)
    except (OSError, ValueError) as e:
        print(f"error: --colab-links: {e}", file=sys.stderr)
        return 2
    print(f"{target}: {'links updated' if changed else 'links already up to date'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ies notebooks",
        description="Run the course notebooks in order with papermill, then print a summary table.",
    )
    parser.add_argument("--profile", default="teaching", choices=("smoke", "teaching", "full"),
                        help="smoke (seconds, CI), teaching (default; MNIST-1D on a CPU), full (paper settings, GPU)")
    parser.add_argument("--output", metavar="RUN_DIR", default="",
                        help="folder for the executed notebooks and their outputs (default: runs/notebooks-<time>)")
    parser.add_argument("--only", default="", help="comma-separated notebooks to run, e.g. 01,03")
    parser.add_argument("--device", default=None, help="DEVICE of every notebook (default: the notebooks' auto)")
    parser.add_argument("--data-dir", default=None, help="DATA_DIR of every notebook (default: the package cache)")
    parser.add_argument("--seed", type=int, default=None, help="SEED of every notebook (default: the notebooks' 0)")
    parser.add_argument("--notebooks", metavar="DIR", default="",
                        help="folder of NN_*.ipynb notebooks (default: notebooks/ of the repository)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no per-cell progress bar")
    parser.add_argument("--cell-timeout", metavar="SECONDS", type=float, default=-1,
                        help="longest time one cell may run (0: no limit; default: 600 smoke, 1800 teaching, "
                             "none full)")
    parser.add_argument("--html", action=argparse.BooleanOptionalAction, default=True,
                        help="render the executed notebooks and an index.html into RUN_DIR (default: yes)")
    parser.add_argument("--site", metavar="DIR", default="",
                        help="the teacher's reference run and site: the executed notebooks into DIR (as --output DIR), "
                        "each rendered as HTML, the module's README, INSTRUCTORS.md and paper-facts.md as pages, "
                        "DIR/index.html linking them all")
    parser.add_argument("--student", metavar="DIR", default="",
                        help="write student copies (cells tagged 'solution' removed, no outputs) into DIR; run nothing")
    parser.add_argument("--colab-links", metavar="FILE", nargs="?", const="-", default="",
                        help="print the 'Open in Colab' table, or rewrite it between its markers in FILE; run nothing")
    parser.add_argument("--expected", metavar="RUN_DIR", nargs="+", default=[],
                        help="write the expected results (verdicts and effect ranges, stable against seed-sensitive) "
                        "of 3 or more reference runs into the notebooks' INSTRUCTORS.md; run nothing")
    parser.add_argument("--repository", metavar="OWNER/NAME", default="",
                        help="with --colab-links: the GitHub repository they open "
                        "(default: ies.course.colab.REPOSITORY)")
    parser.add_argument("--branch", default="",
                        help="with --colab-links: its branch (default: ies.course.colab.REVISION, else BRANCH)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.notebooks:
            folder = Path(args.notebooks).resolve()
            cwd = folder.parent
        else:
            cwd = repo_root()
            folder = cwd / "notebooks"
        notebooks = find_notebooks(folder, args.only)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not notebooks:
        print(f"error: no {NOTEBOOK_GLOB} notebooks in {folder}", file=sys.stderr)
        return 2
    if args.student:
        return write_student(notebooks, Path(args.student))
    if args.colab_links:
        return print_colab_links(notebooks, args.colab_links, args.repository, args.branch)
    if args.expected:
        return write_expected_results(args.expected, folder / "INSTRUCTORS.md")
    if args.site and args.output and Path(args.site).resolve() != Path(args.output).resolve():
        print("error: --site DIR writes the run into DIR: give --site or --output, not both", file=sys.stderr)
        return 2
    if args.site:
        args.html = True
    out = Path(args.site or args.output or f"runs/notebooks-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    parameters = {"PROFILE": args.profile}
    for name, value in (("DEVICE", args.device), ("DATA_DIR", args.data_dir), ("SEED", args.seed)):
        if value is not None:
            parameters[name] = value

    print(f"running {len(notebooks)} notebook(s) from {folder}, profile {args.profile}, into {out}", flush=True)
    results = [NotebookResult(p.stem) for p in notebooks]
    failed = None
    for i, path in enumerate(notebooks):
        step = f"[{i + 1}/{len(notebooks)}] {path.stem}"
        print(f"{step} ...", flush=True)
        results[i] = run_notebook(path, out, parameters, cwd, progress=args.progress,
                                  cell_timeout=args.cell_timeout if args.cell_timeout else None)
        print(f"{step}: {results[i].status} in {results[i].seconds:.1f} s", flush=True)
        if results[i].status != "ok":
            failed = results[i]
            break
    table = summary_table(results)
    (out / "summary.txt").write_text(table + "\n")
    print("\n" + table)
    index = render_run(out, results, folder if args.site else None) if args.html else None
    if failed is not None:
        print(f"\nnotebook {failed.name} failed: {failed.error}\n"
              f"the executed notebook, with the traceback, is {out / (failed.name + '.ipynb')}", file=sys.stderr)
        if index is not None:
            print(f"HTML index of the run: {index}", file=sys.stderr)
        return 1
    print(f"\nexecuted notebooks and their outputs in {out}")
    if index is not None:
        print(f"HTML index of the run: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
