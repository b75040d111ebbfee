"""The documentation: the site builds with warnings as errors, and every command it shows runs.

Every fenced shell (``bash``, ``sh``, ``shell``, ``console``) and ``python`` block of README.md
and docs/*.md is run, page by page, in a temporary folder of the page's own, in the page's
order (a later block sees what an earlier one made), on the demo archive. HTML comments on the
lines right before a block say what it needs (docs/development.md lists them):

- ``<!-- file: PATH -->``: the block (any language) is a file the page's commands use;
- ``<!-- with: gateway | stac_api | s3 -->``: run it with the environment of that loopback stand-in;
- ``<!-- not run: REASON -->``: not run (the internet, Docker, Kubernetes, the suite itself);
- ``<!-- installed: ... -->``: the quick start, whose install steps are .ci/run's (checked here);
  the rest of it is run;
- ``<!-- run on: PAGE -->``: the same commands, with the same stand-ins, run on PAGE (checked here).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "shell", "console"}
RUNNABLE = SHELL | {"python", "py"}
MARKS = {"file", "with", "not run", "installed", "run on"}
STAND_INS = {"gateway", "stac_api", "s3"}
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")
MARK = re.compile(r"^<!--\s*([a-z][a-z ]*?)\s*(?::\s*(.*?))?\s*-->$")
#: A step of the quick start that installs (the part .ci/run takes), not run by this test.
INSTALL = re.compile(r"^(python3? -m venv |\. \S+/bin/activate$|(python -m )?pip install )")


@dataclasses.dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    marks: tuple[tuple[str, str], ...]

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def mark(self, name: str) -> str | None:
        return dict(self.marks).get(name)

    @property
    def runs(self) -> bool:
        return self.lang in RUNNABLE and self.mark("not run") is None and self.mark("file") is None


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, each with the marks (HTML comments) right before it."""
    lines = page.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.group(1), opening.group(2).lower()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith(fence)), len(lines))
        marks, k = [], i - 1
        while k >= 0 and (not lines[k].strip() or MARK.match(lines[k].strip())):
            mark = MARK.match(lines[k].strip())
            if mark:
                marks.append((mark.group(1), mark.group(2) or ""))
            k -= 1
        found.append(Block(page, i + 1, lang, "\n".join(lines[i + 1 : end]), tuple(reversed(marks))))
        i = end + 1
    return found


def commands(block: Block) -> str:
    """What to run of a shell block: a console block's ``$ `` lines, the quick start less its installs."""
    text = block.text
    if block.lang == "console":
        text = "\n".join(line[2:] for line in text.splitlines() if line.startswith("$ "))
    if block.mark("installed") is not None:
        kept = []
        for line in text.splitlines():
            steps = [s.strip() for s in line.split("&&")]
            steps = [s for s in steps if not INSTALL.match(s) and s != "python -m pytest"]
            kept += [" && ".join(steps)] if steps else []
        text = "\n".join(kept)
    return text


ALL = [b for page in PAGES for b in blocks(page)]


def _key(block: Block) -> tuple:
    return (block.lang, commands(block) if block.lang in SHELL else block.text, block.mark("with"))


def run_here(block: Block) -> bool:
    return block.runs and block.mark("run on") is None


def test_every_block_runs_or_says_why():
    """Each runnable block is run by test_the_commands_of_each_page, or marked with its reason;
    the marked ones are listed (``-rA`` or ``-s`` shows them)."""
    runnable = [b for b in ALL if b.lang in RUNNABLE]
    assert len(runnable) >= 20, [b.where for b in runnable]
    for b in ALL:
        names = {name for name, _ in b.marks}
        assert names <= MARKS, f"{b.where}: unknown mark(s) {names - MARKS}"
        if b.mark("not run") is not None:
            assert b.mark("not run").strip(), f"{b.where}: say why the block is not run"
        if b.mark("with") is not None:
            wanted = {w.strip() for w in b.mark("with").split(",")}
            assert wanted <= STAND_INS, f"{b.where}: no stand-in {wanted - STAND_INS}"
        if b.mark("file") is not None:
            assert b.mark("file").strip() and not Path(b.mark("file")).is_absolute(), b.where
    assert [b.page.name for b in ALL if b.mark("installed") is not None] == ["README.md"], "one quick start"
    not_run = [f"{b.where}: {b.mark('not run')}" for b in ALL if b.lang in RUNNABLE and b.mark("not run")]
    print("blocks not run:\n  " + "\n  ".join(not_run))
    again = [b for b in ALL if b.runs and not run_here(b)]
    for b in again:
        twins = [o for o in ALL if run_here(o) and o.page == ROOT / b.mark("run on") and _key(o) == _key(b)]
        assert twins, f"{b.where}: no block of {b.mark('run on')} runs the same commands"
    print(
        "blocks whose commands run on another page:\n  " + "\n  ".join(f"{b.where}: {b.mark('run on')}" for b in again)
    )
    assert sum(b.runs for b in ALL) > len(not_run), "most blocks run"


def test_ci_installs_and_tests_as_the_readme_says():
    """.ci/run installs the project with the README's quick-start steps and runs its test command."""
    (quick,) = [b for b in ALL if b.mark("installed") is not None]
    assert quick.page.name == "README.md"
    said = [s.strip() for line in quick.text.splitlines() for s in line.split("&&")]

    def plain(step: str) -> str:
        return " ".join(word for word in shlex.split(step) if word != "-q")

    ci = [
        plain(line)
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd ")) and "--upgrade pip" not in line
    ]
    readme = [plain(s) for s in said]
    assert ci == [c for c in readme if c in ci], (ci, readme)
    assert ci[:2] == readme[:2], "the same venv, activated"
    assert [c for c in ci if c.startswith("pip install")] == ["pip install .[test]"], ci
    assert "pip install .[test]" in readme and "pip install ." in readme
    assert ci[-1] == readme[-1] == "python -m pytest", "the README's test command is CI's"


def test_the_configuration_page_names_every_key():
    from cubemosaic.clusterspec import ClusterSpec
    from cubemosaic.config import CatalogConf, Config

    page = (ROOT / "docs" / "configuration.md").read_text()
    keys = [f.name for f in dataclasses.fields(Config)]
    keys += [f"catalog.{f.name}" for f in dataclasses.fields(CatalogConf)]
    missing = [k for k in keys if f"`{k}`" not in page]
    missing += [
        f"cluster.{f.name}"
        for f in dataclasses.fields(ClusterSpec)
        if f"`cluster.{f.name}`" not in page and f"`.{f.name}`" not in page
    ]
    assert not missing, f"docs/configuration.md does not document {missing}"


def _report():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import report

    return report


def test_the_performance_table_is_the_benchmarks_own():
    """docs/performance-table.md is what benchmarks/report.py renders from the recorded results."""
    report = _report()
    assert report.TABLE.read_text() == report.render(report.load()), "run python benchmarks/report.py"
    assert '--8<-- "performance-table.md"' in (ROOT / "docs" / "performance.md").read_text()


def test_a_benchmark_run_replaces_the_cases_it_ran(tmp_path):
    report = _report()
    row = {"seconds": 10.0, "peak_mb": 500.0, "rc": 0, "timed_out": False, "stderr": "x"}
    first = report.merged(
        {"runs": []},
        {("a", "floor"): row, ("a", "cubemosaic"): dict(row, seconds=20.0), ("b", "cubemosaic"): row},
        ["a: cubemosaic / floor = 2.00", "peak 1.0x"],
        when="then",
        commit="abc",
        machine="m",
    )
    second = report.merged(first, {("b", "cubemosaic"): dict(row, seconds=5.0)}, ["b: fast"], when="now", commit="def")
    older, newer = second["runs"]
    assert list(older["rows"]) == ["a / floor", "a / cubemosaic"] and list(newer["rows"]) == ["b / cubemosaic"]
    assert [c["text"] for c in older["checks"]] == ["a: cubemosaic / floor = 2.00", "peak 1.0x"]
    assert "stderr" not in newer["rows"]["b / cubemosaic"]
    text = report.render(second)
    assert text.index("**b**: measured now, commit def") < text.index("**a**: measured then, commit abc, on m")
    assert "| a | cubemosaic | 20.0 | 2.00 | 500 |" in text and "| b | cubemosaic | 5.0 |" in text
    third = report.merged(second, {("a", "floor"): row}, [], when="later")
    assert [list(r["rows"]) for r in third["runs"]] == [["b / cubemosaic"], ["a / floor"]], "a run left empty goes"
    table = report.record({("c", "floor"): row}, [], tmp_path / "r.json", tmp_path / "t.md", when="w", commit="c")
    assert "| c | floor | 10.0 | 1.00 | 500 |" in table.read_text()


@pytest.mark.slow
def test_the_site_builds_with_warnings_as_errors(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "site" / "performance" / "index.html").is_file()
    assert "| case | contender" not in (tmp_path / "site" / "performance" / "index.html").read_text(), "table rendered"


def _stand_in_env(request, names: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for name in (n.strip() for n in names.split(",")):
        if name == "gateway":
            env.update(request.getfixturevalue("gateway").env())
        elif name == "stac_api":
            env["STAC_API_URL"] = request.getfixturevalue("stac_api")
        elif name == "s3":
            env.update(request.getfixturevalue("s3"))
    return env


RUN_PAGES = [page for page in PAGES if any(run_here(b) for b in ALL if b.page == page)]


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("page", RUN_PAGES, ids=[str(p.relative_to(ROOT)) for p in RUN_PAGES])
def test_the_commands_of_each_page_run(page, demo, tmp_path, request):
    """Every unmarked shell and Python block of ``page`` runs, in order, in one folder of its own
    (``demo``: the session's demo archive, whose cache folder CUBEMOSAIC_DEMO_DIR names)."""
    folder = tmp_path / page.stem
    folder.mkdir()
    page_blocks = [b for b in ALL if b.page == page]
    for b in page_blocks:
        if b.mark("file"):
            target = folder / b.mark("file")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(b.text + "\n")
    bin_dir = str(Path(sys.executable).parent)
    base = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    ran = []
    for b in page_blocks:
        if not run_here(b):  # not run, or the same commands run on another page
            continue
        env = dict(base, **_stand_in_env(request, b.mark("with") or ""))
        if b.lang in SHELL:
            argv = ["bash", "-e", "-c", commands(b)]
        else:
            argv = [sys.executable, "-c", b.text]
        proc = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, (
            f"{b.where} failed ({proc.returncode}):\n{b.text}\n--- stderr:\n{proc.stderr[-4000:]}"
        )
        assert "Traceback" not in proc.stderr, f"{b.where}:\n{proc.stderr[-4000:]}"
        ran.append(b.where)
    assert ran == [b.where for b in page_blocks if run_here(b)], "every block this page runs ran"
