"""The course's tooling around the notebooks: the Colab setup cell, the "Open in Colab" links,
student copies without the solutions, and the executed notebooks rendered as HTML with an index.

Needs the ``course`` extra (nbformat, nbconvert). The settings a maintainer may change live here, once:
:data:`REPOSITORY` and :data:`REVISION` (what the setup cell installs by default, and where the Colab
badges point).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

#: ``owner/name`` of the project's GitHub repository: what the setup cell installs by default and what the
#: "Open in Colab" badges open. The setup cell installs only this repository (at :data:`REVISION`) or what
#: ``IES_SOURCE`` names, never a name on a package index: the distribution name ``instance-early-stopping``
#: is not published and is not the project's to vouch for.
REPOSITORY = "ies-course/instance-early-stopping"
#: The tag or commit of :data:`REPOSITORY` that the setup cell installs and the badges open, set here once
#: when a release is tagged. Empty while none is: the setup cell then stops with one line naming
#: ``IES_SOURCE`` instead of installing anything.
REVISION = ""
#: The branch the badges open while :data:`REVISION` is empty.
BRANCH = "main"
#: The tag of the cells that :func:`student_copy` removes.
SOLUTION_TAG = "solution"
#: The tag of the YOUR-CODE cells: :func:`student_copy` keeps them, their solution blanked (:func:`blank_solution`).
EXERCISE_TAG = "exercise"
#: What the student copy leaves in place of a solution (``...`` is a valid expression and statement).
YOUR_CODE = "...  # YOUR CODE HERE"
#: Packages of the Jupyter kernel stack: the setup cell must never install (or upgrade) one in a live
#: Colab runtime, and neither may the package's own dependencies.
KERNEL_PACKAGES = ("jupyterlab", "jupyter", "notebook", "ipykernel", "ipython", "ipywidgets", "jupyter_client",
                   "jupyter-client", "jupyter_core", "jupyter-core", "traitlets", "tornado", "pyzmq",
                   "nbformat", "nbconvert", "papermill")


def default_source(repository: str = REPOSITORY, revision: str = REVISION) -> str:
    """The pip requirement the setup cell installs by default: ``git+https://github.com/OWNER/NAME@REVISION``,
    or ``""`` while ``revision`` is still unset (the cell then asks for ``IES_SOURCE``)."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repository):
        raise ValueError(f"repository must be 'owner/name', got {repository!r}")
    if not revision:
        return ""
    if not re.fullmatch(r"[\w.+-]+", revision):
        raise ValueError(f"revision must be a tag or a commit, got {revision!r}")
    return f"git+https://github.com/{repository}@{revision}"


#: What the setup cell says, in one line, when it has nothing it may install.
NO_SOURCE = ("ies is not released yet: set os.environ['IES_SOURCE'] to a pip requirement of the course package "
             "(a wheel, or git+https://github.com/OWNER/REPO@TAG) and run this cell again")

#: The first code cell of every course notebook, byte for byte (the tests check it; write it into a
#: new notebook with :func:`write_setup_cell`). Plain Python rather than ``%pip``: the cell also
#: runs outside IPython and can be read by ``ast``; it installs with the kernel's own interpreter as
#: ``%pip`` would, and only on Colab when ``ies`` is not importable (papermill runs and local
#: installs skip it). It stops with one line (``SystemExit``, no traceback) when there is no source or
#: pip fails, naming ``IES_SOURCE``.
SETUP_CELL = f'''\
# Setup, the same cell in every notebook. On Google Colab it installs the course package `ies` (the project's
# repository at a pinned release, or the pip requirement in os.environ["IES_SOURCE"]) and the little Colab
# lacks (mnist1d); Colab's torch, numpy and Jupyter stay as they are. Elsewhere, or once `ies` imports, it
# does nothing.
import importlib.util
import os
import subprocess
import sys

if "google.colab" in sys.modules and importlib.util.find_spec("ies") is None:
    source = os.environ.get("IES_SOURCE", "{default_source()}")
    if not source:
        raise SystemExit("{NO_SOURCE}")
    if subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", source]).returncode:
        raise SystemExit(f"pip could not install {{source!r}}: set os.environ['IES_SOURCE'] to a source it can install")
    importlib.invalidate_caches()'''


def setup_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The first code cell of ``nb`` (the setup cell in a course notebook)."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code:
        raise ValueError("the notebook has no code cell")
    return code[0]


def write_setup_cell(path: str | Path) -> bool:
    """Make the first code cell of the notebook at ``path`` :data:`SETUP_CELL` (keeping its id);
    return whether the file changed."""
    nb = nbformat.read(path, as_version=4)
    cell = setup_cell(nb)
    if cell.source == SETUP_CELL:
        return False
    cell.source = SETUP_CELL
    nbformat.write(nb, path)
    return True


# ---------------------------------------------------------------------- Colab links
def title(path: str | Path) -> str:
    """The notebook's first Markdown heading without the ``#``, or its file name."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return Path(path).stem


def colab_url(name: str, repository: str = REPOSITORY, branch: str = "") -> str:
    """The "Open in Colab" address of ``notebooks/<name>`` (``name`` with or without ``.ipynb``) at
    ``branch`` (default: :data:`REVISION`, the release the setup cell installs, or :data:`BRANCH` while unset)."""
    branch = branch or REVISION or BRANCH
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repository):
        raise ValueError(f"repository must be 'owner/name', got {repository!r}")
    name = name if name.endswith(".ipynb") else f"{name}.ipynb"
    return f"https://colab.research.google.com/github/{repository}/blob/{branch}/notebooks/{name}"


BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


def glossary_url(repository: str = REPOSITORY, branch: str = "") -> str:
    """The course glossary (``notebooks/README.md#glossary``) on GitHub, reachable from Colab."""
    return f"https://github.com/{repository}/blob/{branch or REVISION or BRANCH}/notebooks/README.md#glossary"


def header_line(name: str) -> str:
    """The line under the title of every course notebook: its "Open in Colab" badge, the glossary and the
    notebook's references cell."""
    return (f"[![Open in Colab]({BADGE})]({colab_url(name)}) · [glossary]({glossary_url()}) · "
            "[references](#references)")


def write_header(path: str | Path) -> bool:
    """Make the second line of the notebook's first cell (a Markdown title) :func:`header_line`, replacing
    an older one; return whether the file changed."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    cell = nb.cells[0]
    if cell.cell_type != "markdown" or not cell.source.startswith("# "):
        raise ValueError(f"{path.name}: the first cell is not a Markdown title")
    lines = cell.source.split("\n")
    line = header_line(path.name)
    if len(lines) > 1 and lines[1].startswith("[![Open in Colab]"):
        if lines[1] == line:
            return False
        lines[1] = line
    else:
        lines[1:1] = [line, ""] if len(lines) > 1 and lines[1] else [line]
    cell.source = "\n".join(lines)
    nbformat.write(nb, path)
    return True


LINKS_BEGIN = "<!-- colab-links: begin (generated by `python -m ies notebooks --colab-links`, do not edit) -->"
LINKS_END = "<!-- colab-links: end -->"


def colab_links(notebooks: list[Path], repository: str = REPOSITORY, branch: str = "") -> str:
    """A Markdown table, one row per notebook: its title and its "Open in Colab" badge, between
    :data:`LINKS_BEGIN` and :data:`LINKS_END`."""
    badge = BADGE
    rows = [LINKS_BEGIN, "| notebook | open |", "| --- | --- |"]
    for path in notebooks:
        rows.append(f"| {title(path)} | [![Open in Colab]({badge})]({colab_url(path.name, repository, branch)}) |")
    return "\n".join(rows + [LINKS_END])


def update_links(markdown: str | Path, notebooks: list[Path], repository: str = REPOSITORY,
                 branch: str = "") -> bool:
    """Replace the block between the markers in the file ``markdown`` by :func:`colab_links`;
    return whether it changed. The file must hold the two markers."""
    path = Path(markdown)
    text = path.read_text()
    start, end = text.find(LINKS_BEGIN), text.find(LINKS_END)
    if start < 0 or end < start:
        raise ValueError(f"{path} lacks the lines {LINKS_BEGIN!r} ... {LINKS_END!r}")
    new = text[:start] + colab_links(notebooks, repository, branch) + text[end + len(LINKS_END):]
    if new == text:
        return False
    path.write_text(new)
    return True


# ---------------------------------------------------------------------- student copies
def is_solution(cell: nbformat.NotebookNode) -> bool:
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def answer_cell(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The empty cell, tagged ``answer``, that takes the place of ``solution`` in a student copy."""
    cell_id = f"{solution.get('id', 'cell')}-answer"[:64]
    if solution.cell_type == "code":
        cell = nbformat.v4.new_code_cell("# your answer here", id=cell_id)
    else:
        cell = nbformat.v4.new_markdown_cell("*Your answers:*", id=cell_id)
    cell.metadata["tags"] = ["answer"]
    return cell


def is_exercise(cell: nbformat.NotebookNode) -> bool:
    return EXERCISE_TAG in cell.get("metadata", {}).get("tags", [])


def blank_solution(source: str) -> str:
    """``source`` of a YOUR-CODE cell with its solution blanked, the markers of otter-grader's format:
    the lines from ``# BEGIN SOLUTION`` to ``# END SOLUTION`` become one ``...  # YOUR CODE HERE`` at the
    marker's indentation; a line ``NAME = expression  # SOLUTION`` becomes ``NAME = ...  # YOUR CODE HERE``.
    Raises ``ValueError`` for an unclosed block or a cell without any marker."""
    out, inside, found = [], False, False
    for line in source.split("\n"):
        stripped = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        if stripped == "# BEGIN SOLUTION":
            if inside:
                raise ValueError("nested # BEGIN SOLUTION")
            inside, found = True, True
            out.append(indent + YOUR_CODE)
        elif stripped == "# END SOLUTION":
            if not inside:
                raise ValueError("# END SOLUTION without # BEGIN SOLUTION")
            inside = False
        elif inside:
            continue
        elif stripped.endswith("# SOLUTION") and "=" in stripped:
            found = True
            target = line.split("=", 1)[0].rstrip()
            out.append(f"{target} = {YOUR_CODE}")
        else:
            out.append(line)
    if inside:
        raise ValueError("# BEGIN SOLUTION without # END SOLUTION")
    if not found:
        raise ValueError("an exercise cell without a # BEGIN SOLUTION block or a '# SOLUTION' line")
    return "\n".join(out)


def student_copy(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, int]:
    """``(copy, removed)``: ``nb`` without its cells tagged ``solution``, every output and execution
    count cleared. Each run of removed cells leaves one cell tagged ``answer`` for the student's
    answer, of the type of the run's first cell (code: ``# your answer here``, Markdown: *Your answers:*).
    Cells tagged ``exercise`` stay, their solution blanked by :func:`blank_solution` (the checks after them
    then fail, saying what to write)."""
    out = nbformat.from_dict(nb)
    cells, removed = [], 0
    for cell in out.cells:
        if is_solution(cell):
            removed += 1
            if not (cells and cells[-1].metadata.get("tags") == ["answer"]):
                cells.append(answer_cell(cell))
            continue
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if is_exercise(cell):
                cell.source = blank_solution(cell.source)
        cells.append(cell)
    out.cells = cells
    return out, removed


def write_student_copies(notebooks: list[Path], folder: str | Path) -> dict[str, int]:
    """Write :func:`student_copy` of each notebook into ``folder`` (same file names); return
    ``{name: solution cells removed}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    removed = {}
    for path in notebooks:
        copy, removed[path.name] = student_copy(nbformat.read(path, as_version=4))
        nbformat.validate(copy)
        nbformat.write(copy, folder / path.name)
    return removed


# ---------------------------------------------------------------------- the executed run as HTML
def render_html(notebook: str | Path) -> Path:
    """Render an executed notebook next to itself as ``<name>.html`` (nbconvert, figures inline)."""
    notebook = Path(notebook)
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    target = notebook.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


FIGURE_SUFFIXES = (".svg", ".pdf", ".png")


#: The course's pages besides the notebooks, rendered into a site by ``python -m ies notebooks --site DIR``:
#: ``(file of notebooks/, page of the site, title)``.
SITE_PAGES = (("README.md", "course.html", "the module: map, glossary, Colab links"),
              ("INSTRUCTORS.md", "instructors.html", "instructor's guide: 90-minute plan, skip list, exit ticket"),
              ("paper-facts.md", "paper-facts.html", "what the course attributes to the paper"))


def render_markdown(source: str | Path, target: str | Path, pages: dict[str, str] | None = None) -> Path:
    """Render the Markdown file ``source`` as the HTML page ``target`` (nbconvert's Markdown filter, the one that
    renders notebook cells); links to a notebook ``NN_name.ipynb`` become its page ``NN_name.html``, links to the
    files of ``pages`` (``{"README.md": "course.html"}``) their pages, so that the site links within itself."""
    from nbconvert.filters.markdown import markdown2html

    text = Path(source).read_text(encoding="utf-8")
    for name, page in (pages or {}).items():
        text = re.sub(rf"\]\((?:\./)?{re.escape(name)}(#[^)]*)?\)", lambda m, page=page: f"]({page}{m[1] or ''})", text)
    text = re.sub(r"\]\((?:\./)?(\d\d_[\w-]+)\.ipynb\)", r"](\1.html)", text)
    body = markdown2html(text)
    heading = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")), Path(source).stem)
    target = Path(target)
    target.write_text(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(heading)}</title>\n<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}"
        "td,th{padding:.3em .8em;text-align:left;vertical-align:top;border-bottom:1px solid #ddd}"
        "code,pre{background:#f4f4f4}</style></head><body>\n"
        f'<p><a href="index.html">index</a></p>\n{body}\n</body></html>\n', encoding="utf-8")
    return target


def write_site_pages(run_dir: str | Path, notebooks_dir: str | Path) -> list[tuple[str, str]]:
    """Render the :data:`SITE_PAGES` of ``notebooks_dir`` that exist into ``run_dir``; return ``(page, title)`` of
    each, for :func:`write_index`."""
    run_dir, notebooks_dir = Path(run_dir), Path(notebooks_dir)
    present = [(name, page, title) for name, page, title in SITE_PAGES if (notebooks_dir / name).exists()]
    links = {name: page for name, page, _ in present}
    for name, page, _ in present:
        render_markdown(notebooks_dir / name, run_dir / page, links)
    return [(page, title) for _, page, title in present]


def write_index(run_dir: str | Path, rows: list[dict], pages: list[tuple[str, str]] = ()) -> Path:
    """Write ``run_dir/index.html``: one row per notebook of the run (``rows``: ``name``, ``status``,
    ``seconds``, ``metrics`` text, ``verdicts``: its tally of verdicts, optional), linking its rendered page,
    its executed ``.ipynb`` and the figures of its output folder, then a link to each of ``pages``
    (``(file, title)``, e.g. of :func:`write_site_pages`); return the path."""
    run_dir = Path(run_dir)
    lines = []
    for row in rows:
        name = row["name"]
        page = run_dir / f"{name}.html"
        link = f'<a href="{html.escape(page.name)}">{html.escape(name)}</a>' if page.exists() else html.escape(name)
        ipynb = run_dir / f"{name}.ipynb"
        source = f'<a href="{html.escape(ipynb.name)}">.ipynb</a>' if ipynb.exists() else ""
        figures = sorted(p for p in (run_dir / name).rglob("*") if p.suffix in FIGURE_SUFFIXES) \
            if (run_dir / name).is_dir() else []
        figure_links = " ".join(f'<a href="{html.escape(p.relative_to(run_dir).as_posix())}">{html.escape(p.name)}</a>'
                                for p in figures)
        seconds = "" if row.get("seconds") is None else f"{row['seconds']:.1f}"
        lines.append(f"<tr><td>{link}</td><td>{source}</td><td>{html.escape(row['status'])}</td>"
                     f"<td>{seconds}</td><td>{html.escape(row.get('verdicts', ''))}</td>"
                     f"<td>{html.escape(row.get('metrics', ''))}</td><td>{figure_links}</td></tr>")
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>IES course run</title>\n"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.3em .8em;text-align:left;"
        "vertical-align:top}tr:nth-child(even){background:#f4f4f4}</style></head><body>\n"
        f"<h1>IES course run: {html.escape(run_dir.name)}</h1>\n<table>\n"
        "<tr><th>notebook</th><th>source</th><th>status</th><th>seconds</th><th>verdicts</th><th>key metrics</th>"
        "<th>figures</th></tr>\n" + "\n".join(lines) + "\n</table>\n"
        + ("<h2>Course pages</h2>\n<ul>\n" + "\n".join(f'<li><a href="{html.escape(page)}">{html.escape(page)}</a>: '
                                                   f"{html.escape(title)}</li>" for page, title in pages)
           + "\n</ul>\n" if pages else "")
        + "</body></html>\n"
    )
    index = run_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
