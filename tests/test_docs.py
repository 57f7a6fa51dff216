"""The README and docs/ cannot drift: every link resolves, the layout names real files, every command shown runs.

Each command in a ``bash`` block (and each ``python`` snippet) runs as written, with tiny limits appended so
that it takes seconds. A page's commands run in the page's order, as a reader runs them, in a scratch project
folder of the page's own that holds the files the commands name (``my_digit.png``, ``photos/``,
``path/to/images``) and a finished tiny training run and tiny search; a run folder's or sweep folder's
placeholder stands for the newest one at that point.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageOps
from torchvision import datasets

import entry_process
from conftest import CHUNKED
from convlens.startup.run_task import PROJECT_ROOT
from digit_folders import write_digit_folder

README = PROJECT_ROOT / "README.md"
LAYOUT = PROJECT_ROOT / "docs" / "layout.md"
PAGES = [README, *sorted((PROJECT_ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#+ (.+)$", re.MULTILINE)


def relative(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT))


def prose(page: Path) -> str:
    """The page without its code blocks, where a bracket is code, not a link."""
    return FENCE.sub("", page.read_text())


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {anchor(heading) for heading in HEADING.findall(prose(page))}


def links() -> list[tuple[str, str]]:
    found = [
        (relative(page), target)
        for page in PAGES
        for target in LINK.findall(prose(page))
        if not re.match(r"[a-z]+:", target)
    ]
    return list(dict.fromkeys(found))


@pytest.mark.parametrize(("page", "target"), links(), ids=lambda value: value)
def test_link_resolves(page, target):
    path, _, fragment = target.partition("#")
    file = (PROJECT_ROOT / page).parent / path if path else PROJECT_ROOT / page
    assert file.exists(), f"{page} links to {target}, but there is no {relative(file.resolve())}"
    if fragment:
        assert fragment in anchors(file), f"{page} links to {target}, but {path or page} has no such heading"


def layout() -> list[tuple[str, str]]:
    """(path, its line) for each line of docs/layout.md's block; two spaces of indent are one folder down."""
    found = FENCE.search(LAYOUT.read_text())
    assert found, "docs/layout.md has no code block"
    block = found.group(2)
    folders: list[str] = []
    entries = []
    for line in block.splitlines():
        depth = (len(line) - len(line.lstrip())) // 2
        name = line.split()[0]
        del folders[depth:]
        entries.append(("".join(folders) + name, line.strip()))
        if name.endswith("/"):
            folders.append(name)
    return entries


@pytest.mark.parametrize("path", [path for path, _ in layout()])
def test_layout_entry_exists(path):
    if path.startswith("src/convlens/chunked/") and not CHUNKED:
        pytest.skip("src/convlens/chunked/ (several steps per call) was deleted, as the layout says it may be")
    assert (PROJECT_ROOT / path).exists(), f"docs/layout.md names {path}, which does not exist"


def test_layout_lists_every_module_and_folder():
    listed = {path.rstrip("/") for path, _ in layout()}
    code = [*(PROJECT_ROOT / "src").rglob("*.py"), *(PROJECT_ROOT / "scripts").glob("*.py")]
    present = {relative(file) for file in code if file.name != "__init__.py"}
    present |= {relative(file.parent) for file in code}
    assert not present - listed, f"docs/layout.md leaves out {sorted(present - listed)}"


RUN_LANGUAGES = {"bash", "python"}  # blocks whose commands the test below runs
SHOWN_LANGUAGES = {"text"}  # blocks that show output or a layout


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_every_code_block_is_run_or_shown_as_text(page):
    languages = {language for language, _ in FENCE.findall(page.read_text())}
    assert languages <= RUN_LANGUAGES | SHOWN_LANGUAGES, (
        f"{relative(page)} has blocks in {sorted(languages - RUN_LANGUAGES - SHOWN_LANGUAGES)}, which the docs test "
        "neither runs nor knows to be output: write commands in bash blocks, output in text blocks"
    )


# Commands that cannot run in a test, each with the reason; every other command shown is run.
def skip_reason(tokens: list[str]) -> str | None:
    program = Path(tokens[0]).name
    if program == "make" and tokens[1] in ("test", "test-fast") or tokens[1:3] == ["-m", "pytest"]:
        return "the test suite this test belongs to"
    if program == "make" and tokens[1] == "app" or any(token.endswith("src/app.py") for token in tokens):
        return "the app is a server that runs until it is stopped (its own tests start and query it)"
    if program == "make" and tokens[1] == "dashboard" or any(token.endswith("dashboard.py") for token in tokens):
        return "a server that runs until it is stopped (tests/test_dashboard.py drives one in Chromium)"
    if program == "make" and tokens[1] == "mlflow":
        return "the MLflow UI is a server that runs until it is stopped (tests/test_trackers.py reads its store)"
    if program == "tensorboard":
        return "a server that runs until it is stopped (tests/test_looking_inside.py queries one)"
    if "--cfg" in tokens:
        return None  # prints the composed config and runs nothing, whatever launcher or devices it names
    if "hydra/launcher=submitit_slurm" in tokens:
        return "submits jobs to a SLURM cluster"
    if "trainer=ddp" in tokens:
        return "needs several GPUs"
    if ("trainer=gpu" in tokens or "cuda" in tokens) and not torch.cuda.is_available():
        return "needs a GPU"
    return None


# Appended to each command of a script: as few batches as still go through every step.
TINY_TRAINING = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.val_check_interval=1",
]
TINY = {
    "src/train.py": TINY_TRAINING,
    "src/eval.py": ["trainer.limit_test_batches=1"],
    "scripts/benchmark.py": [
        "--epochs",
        "1",
        "--runs",
        "1",
        "--limit-train-batches",
        "2",
        "--limit-val-batches",
        "1",
        "--limit-test-batches",
        "1",
        "--val-check-interval",
        "1",
        "--out",
        "logs/benchmark.json",
    ],
}
TINY_SEARCH = ["hydra.sweeper.n_trials=2"]

# The placeholders the pages use for a run folder and a sweep folder; any other <...> in a command fails.
RUN = "logs/train/runs/<date>_<time>_<pid>"
SWEEP = "logs/train/multiruns/<date>_<time>_<pid>"


def shown_commands() -> list[tuple[str, str, str]]:
    """(page, language, command) for each shell line and python snippet, continuation lines joined, page by
    page in the order each page shows them: a page's commands run in that order, as a reader runs them."""
    commands = []
    for page in PAGES:
        for language, body in FENCE.findall(page.read_text()):
            if language == "python":
                commands.append((relative(page), language, body))
            elif language == "bash":
                commands += [
                    (relative(page), language, " ".join(line.split()))
                    for line in body.replace("\\\n", " ").splitlines()
                    if line.strip() and not line.lstrip().startswith("#")
                ]
    return commands


COMMANDS = shown_commands()


def write_scan(image: torch.Tensor, path: Path) -> None:
    """An MNIST digit as a user's scan: dark ink on light paper, four times as large."""
    digit = Image.fromarray(image.numpy()).resize((112, 112))
    ImageOps.invert(digit).save(path)


@pytest.fixture(scope="module")
def project(tmp_path_factory, data_dir) -> Path:
    """A scratch project folder: the code and MNIST linked in, and the files the commands name."""
    root = tmp_path_factory.mktemp("project")
    for name in ("src", "scripts", "conf", "Makefile", "pyproject.toml"):
        (root / name).symlink_to(PROJECT_ROOT / name)
    (root / "data").symlink_to(data_dir.resolve())
    test_images = datasets.MNIST(str(data_dir), train=False).data
    (root / "photos").mkdir()
    for name, index in [
        ("my_digit.png", 100),
        ("my_digit.jpg", 7),
        ("scan1.jpg", 0),
        ("scan2.png", 1),
        ("photos/a.png", 2),
        ("photos/b.jpg", 3),
    ]:
        write_scan(test_images[index], root / name)
    write_digit_folder(data_dir, root / "path" / "to" / "images", per_class=340)  # 10% test: image 100 exists
    return root


def environment(project: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CONVLENS_ROOT": str(project),
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }


def run_script(project: Path, script: str, args: list[str], log: Path) -> tuple[int | None, str]:
    """Run ``python script *args`` in ``project``: its exit status (None: it ran past the timeout) and output."""
    if "hydra/launcher=joblib" not in args:
        status = entry_process.run(script, args, project, environment(project), log, timeout=300)
        return status, log.read_text()[-4000:] if log.exists() else ""
    # joblib's (loky's) idle workers keep a forked child from ending, so a parallel sweep gets a fresh interpreter.
    try:
        result = subprocess.run(
            [sys.executable, script, *args],
            cwd=project,
            env=environment(project),
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        return None, ""
    return result.returncode, (result.stdout + result.stderr)[-4000:]


@pytest.fixture(scope="module")
def folders(project, tmp_path_factory) -> dict[str, str]:
    """A finished tiny training run and a finished tiny search: what a reader has made before opening a page."""
    logs = tmp_path_factory.mktemp("fixture-logs")
    for args in (TINY_TRAINING, ["hparams_search=mnist_optuna", *TINY_SEARCH, *TINY_TRAINING]):
        status, output = run_script(project, "src/train.py", args, logs / "log.txt")
        assert status == 0, output
    (run,) = (project / "logs" / "train" / "runs").iterdir()
    (sweep,) = (project / "logs" / "train" / "multiruns").iterdir()
    return {RUN: str(run), SWEEP: str(sweep)}


@pytest.fixture(scope="module")
def page_project(project, folders, tmp_path_factory):
    """A project folder of its own for each page, made when the page's first command runs: the scratch files and
    a copy of the finished run and search (what a reader has made before opening the page); the page's commands
    then run in it one after another, each seeing what the ones before it left."""
    made: dict[str, Path] = {}

    def for_page(page: str) -> Path:
        if page not in made:
            root = made[page] = tmp_path_factory.mktemp("page")
            for entry in project.iterdir():
                if entry.is_symlink():
                    (root / entry.name).symlink_to(entry.readlink())
                elif entry.is_dir():
                    shutil.copytree(entry, root / entry.name, symlinks=True)
                else:
                    shutil.copy2(entry, root / entry.name)
        return made[page]

    return for_page


def newest(pattern: str, root: Path) -> Path:
    """The newest path matching ``pattern`` under ``root``: what the reader has just made."""
    found = list(root.glob(pattern))
    assert found, f"nothing matches {pattern} under {root} yet to stand for the placeholder"
    return max(found, key=lambda path: path.stat().st_mtime)


def make_recipe(project: Path, tokens: list[str]) -> list[str]:
    """What ``make <target> ARGS=...`` runs, read from the Makefile with ``make -n`` (which runs nothing)."""
    dry = subprocess.run(["make", "-n", *tokens[1:]], cwd=project, capture_output=True, text=True, check=True)
    python_lines = [
        line for line in dry.stdout.splitlines() if line.startswith(".venv/bin/python ") and " -m pip " not in line
    ]
    assert python_lines, f"make -n {' '.join(tokens[1:])} runs no python command:\n{dry.stdout}"
    return shlex.split(python_lines[-1])  # the target's own recipe; its prerequisites are commands of their own


@pytest.mark.slow
@pytest.mark.parametrize(
    ("page", "language", "command"),
    COMMANDS,
    ids=[f"{page}: {command.splitlines()[0]}" for page, _, command in COMMANDS],
)
def test_shown_command_runs(page, language, command, page_project, tmp_path):
    project = page_project(page)
    # The placeholders stand for what the reader has at this point: the newest run with a checkpoint, the
    # newest search.
    if RUN in command:
        command = command.replace(RUN, str(newest("logs/train/runs/*/checkpoints/last.ckpt", project).parents[1]))
    if SWEEP in command:
        command = command.replace(SWEEP, str(newest("logs/train/multiruns/*", project)))
    unknown = re.findall(r"<[^>]*>", command)
    assert not unknown, f"{page} shows {command!r} with placeholders no one can type: {unknown}"
    log = tmp_path / "output.txt"
    if language == "python":
        snippet = tmp_path / "snippet.py"
        snippet.write_text(command)
        status, output = run_script(project, str(snippet), [], log)
        assert status == 0, f"the python snippet on {page} failed:\n{output}"
        return

    tokens = shlex.split(command, comments=True)
    reason = skip_reason(tokens)
    if reason:
        pytest.skip(reason)
    if tokens[0] == "make":
        tokens = make_recipe(project, tokens)
    assert tokens[0] in (".venv/bin/python", "python"), f"{page} shows {command!r}, which the test cannot run"
    # As the shell does: a word with wildcards becomes the files it matches, or stays as it is if none match.
    args = [arg for token in tokens[2:] for arg in sorted(glob.glob(token, root_dir=project)) or [token]]
    script = tokens[1]
    if "--cfg" not in args:  # Hydra prints the config and runs nothing (it takes no overrides after its flags)
        args += TINY.get(script, [])
    if any(arg.startswith("hparams_search=") for arg in args):
        args += TINY_SEARCH
    status, output = run_script(project, str(project / script), args, log)
    assert status == 0, f"{page}: {command}\nexited {status}:\n{output}"
