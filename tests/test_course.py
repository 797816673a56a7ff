"""The course's tooling (``ies.course.colab`` and the runner's ``--student``, ``--html``, ``--colab-links``).

Every ``notebooks/NN_*.ipynb`` (07 and 08 too, once added) opens with the one setup cell, byte for byte,
that installs nothing of the kernel stack; the package's core dependencies hold no kernel package either
(pip installs them on Colab). Student copies have no ``solution`` cell and still run; the HTML index
links every executed notebook; the Colab links come from one repository setting.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from ies.course import colab as course
from ies.course.runner import main, run_notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
by_name = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])


def requirement_name(req: str) -> str:
    return re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower().replace("_", "-")


KERNEL = {requirement_name(p) for p in course.KERNEL_PACKAGES}


@pytest.fixture
def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# ---------------------------------------------------------------------- the setup cell
@by_name
def test_setup_cell_is_the_one_cell(path):
    cell = course.setup_cell(nbformat.read(path, as_version=4))
    assert cell.source == course.SETUP_CELL, (
        f"{path.name}: the first code cell is not ies.course.colab.SETUP_CELL; "
        f"fix with: python -c \"from ies.course.colab import write_setup_cell; write_setup_cell('{path.as_posix()}')\"")
    assert "parameters" not in cell.metadata.get("tags", [])


def test_setup_cell_installs_only_what_the_project_owns():
    tree = ast.parse(course.SETUP_CELL)  # plain Python: no %pip magic
    words = set(re.findall(r"[\w-]+", ast.unparse(tree).lower()))  # the code, without its comments
    assert not words & KERNEL, f"the setup cell names {words & KERNEL}"
    runs = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "subprocess.run"]
    assert len(runs) == 1
    assert ast.unparse(runs[0].args[0]) == "[sys.executable, '-m', 'pip', 'install', '--quiet', source]"
    defaults = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "os.environ.get"]
    name, default = (ast.literal_eval(a) for a in defaults[0].args)
    assert name == "IES_SOURCE"
    # the default is the project's own repository at a pinned revision, or nothing (then the cell stops)
    assert default == course.default_source()
    assert default == "" or re.fullmatch(rf"git\+https://github\.com/{re.escape(course.REPOSITORY)}@[\w.+-]+", default)


def test_default_source_is_pinned_or_empty():
    assert course.default_source("me/fork", "") == ""
    assert course.default_source("me/fork", "v0.2.0") == "git+https://github.com/me/fork@v0.2.0"
    assert course.default_source("me/fork", "0123abcd") == "git+https://github.com/me/fork@0123abcd"
    with pytest.raises(ValueError, match="owner/name"):
        course.default_source("instance-early-stopping", "v1")
    with pytest.raises(ValueError, match="tag or a commit"):
        course.default_source("me/fork", "main; rm -rf /")


@by_name
def test_no_notebook_installs_a_name_the_project_does_not_own(path):
    """Only the setup cell may install, and only from ``IES_SOURCE`` or the pinned repository."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells[1:]:
        if cell.cell_type == "code" and cell is not course.setup_cell(nb):
            assert not re.search(r"pip\s+install|subprocess|%pip|!pip", cell.source), f"{path.name}: {cell.source[:80]}"


@by_name
def test_first_cell_has_the_badge_the_glossary_and_the_references(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].source.split("\n")[1] == course.header_line(path.name), (
        f"regenerate: python -c \"from ies.course.colab import write_header; write_header('{path.as_posix()}')\"")
    assert course.colab_url(path.name) in nb.cells[0].source and course.glossary_url() in nb.cells[0].source


def test_core_dependencies_hold_no_kernel_package_and_dev_pulls_the_course_extra(pyproject):
    core = {requirement_name(r) for r in pyproject["project"]["dependencies"]}
    extras = pyproject["project"]["optional-dependencies"]
    assert not core & KERNEL, f"core dependencies of the kernel stack: {core & KERNEL}"
    assert {"torch", "numpy", "pandas", "scipy", "mnist1d"} <= core and not {"matplotlib", "seaborn"} & core
    assert {"matplotlib", "seaborn", "jupyterlab", "ipykernel", "ipywidgets", "papermill", "nbformat", "nbconvert"} <= {
        requirement_name(r) for r in extras["course"]}
    assert f"{pyproject['project']['name']}[course]" in extras["dev"]


def run_setup_cell(monkeypatch, *, colab: bool, ies_found: bool, source: str | None = None,
                   returncode: int = 0) -> list:
    calls = []

    def fake_run(cmd):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, returncode)

    monkeypatch.setattr(subprocess, "run", fake_run)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (real_find_spec(name, *a) if ies_found else None) if name == "ies"
                        else real_find_spec(name, *a))
    if colab:
        monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    if source is None:
        monkeypatch.delenv("IES_SOURCE", raising=False)
    else:
        monkeypatch.setenv("IES_SOURCE", source)
    exec(compile(course.SETUP_CELL, "setup-cell", "exec"), {})
    return calls


def test_setup_cell_installs_on_colab_only_when_ies_is_missing(monkeypatch):
    assert run_setup_cell(monkeypatch, colab=True, ies_found=True) == []  # papermill runs, a local install
    assert run_setup_cell(monkeypatch, colab=False, ies_found=False) == []  # not Colab: never installs
    pip = [sys.executable, "-m", "pip", "install", "--quiet"]
    url = "git+https://github.com/someone/fork@v1"
    assert run_setup_cell(monkeypatch, colab=True, ies_found=False, source=url) == [pip + [url]]


def test_setup_cell_without_a_source_stops_with_one_line_naming_ies_source(monkeypatch):
    if course.default_source():
        pytest.skip(f"a release is pinned ({course.REVISION}): the default installs it")
    with pytest.raises(SystemExit) as stop:
        run_setup_cell(monkeypatch, colab=True, ies_found=False)
    assert "IES_SOURCE" in str(stop.value) and "\n" not in str(stop.value)


def test_setup_cell_stops_with_one_line_when_pip_fails(monkeypatch):
    with pytest.raises(SystemExit) as stop:
        run_setup_cell(monkeypatch, colab=True, ies_found=False, source="./no-such.whl", returncode=1)
    assert str(stop.value) == ("pip could not install './no-such.whl': "
                               "set os.environ['IES_SOURCE'] to a source it can install")


def test_write_setup_cell_keeps_the_id(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 09 · A title"), nbformat.v4.new_code_cell("%pip install x")]
    path = tmp_path / "09_new.ipynb"
    nbformat.write(nb, path)
    assert course.write_setup_cell(path) and not course.write_setup_cell(path)
    again = nbformat.read(path, as_version=4)
    assert again.cells[1].source == course.SETUP_CELL and again.cells[1].id == nb.cells[1].id


# ---------------------------------------------------------------------- Colab links
def test_colab_url():
    assert course.colab_url("03_training", "someone/repo", "dev") == (
        "https://colab.research.google.com/github/someone/repo/blob/dev/notebooks/03_training.ipynb")
    with pytest.raises(ValueError, match="owner/name"):
        course.colab_url("03_training", "https://github.com/someone/repo")


def test_course_readme_links_are_the_generated_ones():
    text = (ROOT / "notebooks" / "README.md").read_text()
    block = course.colab_links(NOTEBOOKS)
    assert block in text, "regenerate: python -m ies notebooks --colab-links notebooks/README.md"
    for path in NOTEBOOKS:
        assert course.colab_url(path.name) in block
    anywhere = [p.read_text() for p in [ROOT / "README.md", ROOT / "notebooks" / "README.md", *NOTEBOOKS]]
    found = {u for t in anywhere for u in re.findall(r"https://colab\.research\.google\.com/github/[^\s)\"']+", t)}
    assert found == {course.colab_url(p.name) for p in NOTEBOOKS}, "a hand-written Colab address"


def test_colab_links_cli(tmp_path, capsys):
    assert main(["--colab-links"]) == 0
    assert capsys.readouterr().out.strip() == course.colab_links(NOTEBOOKS)
    md = tmp_path / "page.md"
    md.write_text(f"intro\n{course.LINKS_BEGIN}\nold\n{course.LINKS_END}\noutro\n")
    assert main(["--colab-links", str(md), "--only", "01"]) == 0
    assert md.read_text() == f"intro\n{course.colab_links(NOTEBOOKS[:1])}\noutro\n"
    (tmp_path / "bare.md").write_text("no markers")
    assert main(["--colab-links", str(tmp_path / "bare.md")]) == 2
    assert "lacks the lines" in capsys.readouterr().err
    # a fork regenerates the links for its own repository and branch
    assert main(["--colab-links", "--only", "01", "--repository", "me/ies-fork", "--branch", "dev"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-2].endswith(
        "(https://colab.research.google.com/github/me/ies-fork/blob/dev/notebooks/01_finite_differences.ipynb) |")
    assert main(["--colab-links", "--repository", "not a repo"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# ---------------------------------------------------------------------- student copies
def notebook_with_solutions(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('PROFILE: str = "teaching"\nOUTPUT_DIR: str = "out"')
    params.metadata["tags"] = ["parameters"]
    exercise = nbformat.v4.new_markdown_cell("**Exercise.** Square 7.")
    solution = nbformat.v4.new_code_cell("answer = 7 ** 2\nprint(answer)", execution_count=3,
                                         outputs=[nbformat.v4.new_output("stream", text="49\n")])
    solution.metadata["tags"] = ["solution"]
    solution_text = nbformat.v4.new_markdown_cell("The square is 49.")
    solution_text.metadata["tags"] = ["solution", "other"]
    tail = nbformat.v4.new_code_cell(
        "import json, pathlib\nout = pathlib.Path(OUTPUT_DIR); out.mkdir(parents=True, exist_ok=True)\n"
        "(out / 'metrics.json').write_text(json.dumps({'profile': PROFILE}))", execution_count=4)
    quiz = nbformat.v4.new_markdown_cell("**Quiz.** Is 49 odd?")
    quiz_answer = nbformat.v4.new_markdown_cell("Yes.")
    quiz_answer.metadata["tags"] = ["solution"]
    nb.cells = [params, exercise, solution, solution_text, tail, quiz, quiz_answer]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "01_exercise.ipynb"
    nbformat.write(nb, path)
    return path


def test_student_copy_removes_the_solutions_and_still_runs(tmp_path, capsys):
    teacher = notebook_with_solutions(tmp_path / "course" / "notebooks")
    students = tmp_path / "students"
    assert main(["--notebooks", str(teacher.parent), "--student", str(students)]) == 0
    assert "01_exercise.ipynb: 3 solution cell(s) removed" in capsys.readouterr().out
    copy = nbformat.read(students / teacher.name, as_version=4)
    nbformat.validate(copy)
    assert [c.source for c in copy.cells] == [
        'PROFILE: str = "teaching"\nOUTPUT_DIR: str = "out"', "**Exercise.** Square 7.", "# your answer here",
        "import json, pathlib\nout = pathlib.Path(OUTPUT_DIR); out.mkdir(parents=True, exist_ok=True)\n"
        "(out / 'metrics.json').write_text(json.dumps({'profile': PROFILE}))", "**Quiz.** Is 49 odd?",
        "*Your answers:*"]
    assert [c.cell_type for c in copy.cells] == ["code", "markdown", "code", "code", "markdown", "markdown"]
    assert [c.metadata.get("tags") for c in copy.cells][2::3] == [["answer"], ["answer"]]
    assert not any(course.is_solution(c) for c in copy.cells)
    assert all(c.outputs == [] and c.execution_count is None for c in copy.cells if c.cell_type == "code")
    assert "solution" in teacher.read_text(), "the teacher's notebook is left as it was"
    result = run_notebook(students / teacher.name, tmp_path / "run", {"PROFILE": "smoke"}, cwd=tmp_path,
                          progress=False)
    assert result.status == "ok", result.error
    assert result.metrics == {"profile": "smoke"}


@by_name
def test_student_copy_of_a_course_notebook_runs(path, tmp_path):
    """The student copy of every course notebook has no solution cell. Where only Markdown was removed, its
    code is the notebook's own code, cell for cell (the smoke run of the notebook covers it); where a code cell
    was removed, the copy itself runs in the smoke profile."""
    nb = nbformat.read(path, as_version=4)
    removed = course.write_student_copies([path], tmp_path / "notebooks")[path.name]
    assert removed == sum(course.is_solution(c) for c in nb.cells)
    copy = nbformat.read(tmp_path / "notebooks" / path.name, as_version=4)
    assert not any(course.is_solution(c) for c in copy.cells)
    if not any((course.is_solution(c) or course.is_exercise(c)) and c.cell_type == "code" for c in nb.cells):
        answers = [c for c in copy.cells if c.metadata.get("tags") == ["answer"]]
        assert all(c.cell_type == "markdown" for c in answers)
        assert [c.source for c in copy.cells if c.cell_type == "code"] == [
            c.source for c in nb.cells if c.cell_type == "code"]
        return
    result = run_notebook(tmp_path / "notebooks" / path.name, tmp_path / "run", {"PROFILE": "smoke"}, cwd=ROOT,
                          progress=False)
    assert result.status == "ok", f"{path.name} without its solutions: {result.error}"
    # the blanks of the YOUR-CODE cells: every check ran and said "not yet"
    assert result.metrics.get("exercises") and not any(result.metrics["exercises"].values()), result.metrics


# ---------------------------------------------------------------------- the run as HTML
class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href"]


def hrefs(path: Path) -> list[str]:
    parser = Links()
    parser.feed(path.read_text())
    return parser.hrefs


def tiny_notebook(folder: Path, name: str, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('PROFILE: str = "teaching"\nOUTPUT_DIR: str = "out"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}"), params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{name}.ipynb")


FIGURE = (
    "import json, pathlib\nimport matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
    "out = pathlib.Path(OUTPUT_DIR); out.mkdir(parents=True, exist_ok=True)\n"
    "fig, ax = plt.subplots(); ax.plot([1, 2]); fig.savefig(out / 'line.svg')\n"
    "print('the printed answer is', 6 * 7)\n(out / 'metrics.json').write_text(json.dumps({'answer': 42}))"
)


def test_html_index_links_every_executed_notebook(tmp_path, capsys):
    folder = tmp_path / "course" / "notebooks"
    for name in ("01_first", "02_second"):
        tiny_notebook(folder, name, FIGURE)
    run = tmp_path / "run"
    assert main(["--notebooks", str(folder), "--output", str(run), "--profile", "smoke", "--no-progress"]) == 0
    assert f"HTML index of the run: {run / 'index.html'}" in capsys.readouterr().out
    links = hrefs(run / "index.html")
    for name in ("01_first", "02_second"):
        assert f"{name}.html" in links and f"{name}.ipynb" in links and f"{name}/line.svg" in links
        page = (run / f"{name}.html").read_text()
        assert "the printed answer is 42" in page, "the page shows the executed outputs"
    assert all((run / href).exists() for href in links)
    assert "answer=42" in (run / "index.html").read_text()


CLAIMS = (
    "import json, pathlib\n"
    "out = pathlib.Path(OUTPUT_DIR); out.mkdir(parents=True, exist_ok=True)\n"
    "rows = [{'claim': c, 'verdict': v, 'seeds': 3} for c, v in "
    "[('a', 'supported'), ('b', 'not supported'), ('c', 'inconclusive (within seed noise)')]]\n"
    "(out / 'metrics.json').write_text(json.dumps({'claims_table': rows}))"
)


def test_html_index_shows_each_notebooks_verdict_tally(tmp_path, capsys):
    folder = tmp_path / "course" / "notebooks"
    tiny_notebook(folder, "01_finite_differences", FIGURE)  # a notebook without claims: no tally
    tiny_notebook(folder, "03_training", CLAIMS)
    run = tmp_path / "run"
    assert main(["--notebooks", str(folder), "--output", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    page = (run / "index.html").read_text()
    assert "1 supported, 1 not supported, 1 inconclusive: 2 of 3 decided (67 %)" in page
    table = pd.read_csv(run / "verdicts.csv")
    assert table["claim"].tolist() == ["a", "b", "c"] and set(table["notebook"]) == {3}


def test_html_index_of_a_failed_run_and_no_html(tmp_path, capsys):
    folder = tmp_path / "course" / "notebooks"
    tiny_notebook(folder, "01_first", FIGURE)
    tiny_notebook(folder, "02_boom", "raise ValueError('boom')")
    tiny_notebook(folder, "03_after", FIGURE)
    run = tmp_path / "run"
    assert main(["--notebooks", str(folder), "--output", str(run), "--no-progress"]) == 1
    links = hrefs(run / "index.html")
    assert {"01_first.html", "02_boom.html"} <= set(links) and "03_after.html" not in links
    assert "ValueError" in (run / "02_boom.html").read_text(), "the failed notebook's page shows the traceback"
    quiet = tmp_path / "quiet"
    assert main(["--notebooks", str(folder), "--output", str(quiet), "--only", "01", "--no-html",
                 "--no-progress"]) == 0
    assert not list(quiet.glob("*.html"))
    assert json.loads((quiet / "01_first" / "metrics.json").read_text()) == {"answer": 42}


def test_cell_timeout_option_fails_a_slow_cell(tmp_path, capsys):
    folder = tmp_path / "course" / "notebooks"
    tiny_notebook(folder, "01_slow", "import time\ntime.sleep(30)")
    assert main(["--notebooks", str(folder), "--output", str(tmp_path / "run"), "--cell-timeout", "2",
                 "--no-progress", "--no-html"]) == 1
    assert "CellTimeoutError" in capsys.readouterr().err


# ---------------------------------------------------------------------- one story
@by_name
def test_notebook_ends_with_recap_and_quiz_with_answers(path):
    cells = nbformat.read(path, as_version=4).cells
    heads = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and re.search(r"^## Quiz", c.source, re.M)]
    assert heads, f"{path.name} has no quiz"
    quiz = heads[-1]
    assert any("## Recap" in c.source for c in cells[: quiz + 1] if c.cell_type == "markdown"), path.name
    answers = cells[quiz + 1 :]
    assert answers and "solution" in answers[0].metadata.get("tags", []), f"{path.name}: quiz answers untagged"
    for cell in cells:  # a solution outside a solution cell would reach the student copies
        if "solution" not in cell.metadata.get("tags", []):
            assert "<summary>Solutions" not in cell.source, f"{path.name}: solutions in an untagged cell"


def test_the_module_closes_after_the_last_notebook():
    last = nbformat.read(NOTEBOOKS[-1], as_version=4)
    code = [c.source for c in last.cells if c.cell_type == "code"]
    assert any("module_verdicts(OUT.parent)" in s for s in code), "the last notebook gathers the module's verdicts"
    for path in NOTEBOOKS[:-1]:
        text = "".join(c.source for c in nbformat.read(path, as_version=4).cells)
        assert "module_verdicts" not in text, f"{path.name} should leave the closing table to the last notebook"


def test_site_is_the_reference_run_and_the_course_pages_linked_from_one_index(tmp_path, capsys):
    """``--site DIR``: the teacher's one command. On the smoke profile for notebook 01: its executed notebook and
    page, the module's README (glossary), the instructor's guide and the paper facts as pages, every link of the
    index resolving to a file of the site, the guide's links to notebooks turned into their pages."""
    site = tmp_path / "site"
    assert main(["--site", str(site), "--only", "01", "--profile", "smoke", "--no-progress"]) == 0
    assert f"HTML index of the run: {site / 'index.html'}" in capsys.readouterr().out
    links = hrefs(site / "index.html")
    assert {"01_finite_differences.html", "01_finite_differences.ipynb", "course.html", "instructors.html",
            "paper-facts.html"} <= set(links)
    assert all((site / href.split("#")[0]).is_file() for href in links)
    assert "Exit ticket" in (site / "instructors.html").read_text()
    assert "01_finite_differences.html" in hrefs(site / "instructors.html")  # a notebook's page, not its .ipynb
    assert "instructors.html" in hrefs(site / "course.html") and "glossary" in (site / "course.html").read_text()
    assert main(["--site", str(site), "--output", str(tmp_path / "other"), "--only", "01"]) == 2
