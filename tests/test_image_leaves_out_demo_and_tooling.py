"""The image ships the runtime only: functions/demo and functions/tooling stay out of it.

No container engine exists on the build machines, so what the Containerfile would put in the image is
rebuilt from its own instructions. Cases:
- the wheel that its build stage's `pip install /src` installs (built with `pip wheel --no-deps` from
  the files that stage copies, the ignore files NOT applied, so pyproject's package exclusion is checked
  on its own) holds the runtime and no file of functions/demo or functions/tooling;
- .containerignore (podman, buildah) and .dockerignore (docker) are the same and keep both folders out
  of every COPY from the build context, which is how the final stage's /app/functions is filled;
- no module the image ships (the wheel's and those COPY puts under /app) imports functions.demo,
  functions.tooling or a dev-only dependency (in the dev extra, not in the runtime dependencies),
  except inside a `try` that handles ModuleNotFoundError/ImportError, as `finops demo` does;
- `finops demo` and `finops events generate`, run from that wheel, answer one clear error line and exit
  status 2 instead of a traceback.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LEFT_OUT = ("functions/demo", "functions/tooling")
LEFT_OUT_MODULES = ("functions.demo", "functions.tooling")
IGNORE_FILES = (ROOT / ".containerignore", ROOT / ".dockerignore")


def _stages() -> list[list[tuple[str, str]]]:
    """The Containerfile's instructions (continuations joined, comments dropped), one list per FROM."""
    text = (ROOT / "Containerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    stages: list[list[tuple[str, str]]] = []
    for line in (ln.strip() for ln in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        op, _, arg = line.partition(" ")
        if op.upper() == "FROM":
            stages.append([])
        stages[-1].append((op.upper(), arg.strip()))
    return stages


def _context_copies(stage: list[tuple[str, str]]) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context (not --from another stage)."""
    copies = []
    for op, arg in stage:
        words = arg.split()
        if op == "COPY" and not any(w.startswith("--from") for w in words):
            paths = [w for w in words if not w.startswith("--")]
            copies.append((paths[:-1], paths[-1]))
    return copies


def _ignore_patterns(path: Path) -> list[str]:
    lines = (ln.strip() for ln in path.read_text(encoding="utf-8").splitlines())
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regular expression on a relative path."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def is_ignored(rel: str, patterns: list[str]) -> bool:
    """Whether the build context leaves `rel` out: the last pattern matching it or a parent folder wins."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for raw in patterns:
        negated = raw.startswith("!")
        regex = _pattern_regex(os.path.normpath(raw.lstrip("!").strip()).strip("/"))
        if any(regex.match(p) for p in prefixes):
            ignored = not negated
    return ignored


def _files_under(source: Path) -> Iterator[Path]:
    if source.is_file():
        yield source
        return
    for path in sorted(source.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """The wheel `pip install /src` builds from what the build stage copies into /src."""
    build = _stages()[0]
    workdir = next(arg for op, arg in build if op == "WORKDIR")
    runs = " ".join(arg for op, arg in build if op == "RUN")
    assert f"pip install --no-cache-dir {workdir}" in runs, "the build stage installs its WORKDIR"
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    for sources, dest in _context_copies(build):
        target = src if dest.rstrip("/") in (".", workdir) else src / dest
        for name in sources:
            for path in _files_under(ROOT / name):  # a folder's contents go into the destination
                copy = target / (path.name if (ROOT / name).is_file() else path.relative_to(ROOT / name))
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, copy)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "--quiet", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (built,) = out.glob("*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


def test_the_wheel_holds_the_runtime_and_leaves_out_demo_and_tooling(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    assert {"functions/main.py", "functions/cli.py", "functions/local/supervisor.py"} <= set(names)
    assert [n for n in names if n.startswith(tuple(f"{d}/" for d in LEFT_OUT))] == []


def test_both_ignore_files_keep_demo_and_tooling_out_of_every_copy() -> None:
    patterns = [_ignore_patterns(path) for path in IGNORE_FILES]
    assert patterns[0] == patterns[1], ".containerignore and .dockerignore must list the same patterns"
    for folder in LEFT_OUT:
        assert is_ignored(folder, patterns[0]) and is_ignored(f"{folder}/__init__.py", patterns[0]), folder
    assert not is_ignored("functions/main.py", patterns[0]) and not is_ignored("functions/local/broker.py", patterns[0])
    copied = [src for stage in _stages() for sources, _ in _context_copies(stage) for src in sources]
    assert "functions" in copied, "the image's /app/functions comes from a COPY of the build context"


def _shipped_sources(wheel: zipfile.ZipFile) -> dict[str, str]:
    """Every Python file the image holds: the installed wheel's and those the final stage COPYs to /app."""
    files = {f"site-packages/{n}": wheel.read(n).decode("utf-8") for n in wheel.namelist() if n.endswith(".py")}
    patterns = _ignore_patterns(IGNORE_FILES[0])
    for sources, _ in _context_copies(_stages()[-1]):
        for name in sources:
            for path in _files_under(ROOT / name):
                rel = path.relative_to(ROOT).as_posix()
                if path.suffix == ".py" and not is_ignored(rel, patterns):
                    files[f"app/{rel}"] = path.read_text(encoding="utf-8")
    return files


def _guards_missing_module(node: ast.Try) -> bool:
    for handler in node.handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(k, ast.Name) and k.id in ("ModuleNotFoundError", "ImportError") for k in kinds):
            return True
    return False


def unguarded_imports(tree: ast.AST, package: str) -> Iterator[str]:
    """Module names a file imports at run time, leaving out `if TYPE_CHECKING:` blocks and imports
    inside a `try` that handles the module's absence. `from a import b` yields a and a.b."""
    if isinstance(tree, ast.Import):
        yield from (alias.name for alias in tree.names)
    elif isinstance(tree, ast.ImportFrom):
        base = tree.module or ""
        if tree.level:
            anchor = ".".join(package.split(".")[: len(package.split(".")) - tree.level + 1])
            base = f"{anchor}.{base}".rstrip(".")
        yield base
        yield from (f"{base}.{alias.name}" for alias in tree.names)
    elif isinstance(tree, ast.If) and "TYPE_CHECKING" in ast.unparse(tree.test):
        for child in tree.orelse:
            yield from unguarded_imports(child, package)
    elif isinstance(tree, ast.Try) and _guards_missing_module(tree):
        for child in [*tree.handlers, *tree.orelse, *tree.finalbody]:
            yield from unguarded_imports(child, package)
    else:
        for child in ast.iter_child_nodes(tree):
            yield from unguarded_imports(child, package)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(specs: list[str]) -> set[str]:
    return {_canonical(re.split(r"[\s<>=!~;\[(]", spec, maxsplit=1)[0]) for spec in specs}


def _dev_only_imports() -> dict[str, str]:
    """Import name -> distribution, for the names that only distributions of the dev extra provide."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    dev_only = _requirement_names(project["optional-dependencies"]["dev"]) - _requirement_names(project["dependencies"])
    provided = {_canonical(d).replace("-", "_"): d for d in dev_only}  # the usual name, were one not installed here
    provided.update({name: dists[0] for name, dists in importlib.metadata.packages_distributions().items()
                     if dists and all(_canonical(d) in dev_only for d in dists)})
    assert "grafana_foundation_sdk" in provided and "pytest" in provided
    return provided


def test_no_shipped_module_imports_demo_tooling_or_a_dev_only_dependency(wheel: zipfile.ZipFile) -> None:
    dev_only = _dev_only_imports()
    files = _shipped_sources(wheel)
    assert any(f.endswith("functions/main.py") for f in files) and any(f.startswith("app/operator/") for f in files)
    problems = []
    for where, text in sorted(files.items()):
        module = where.split("/", 1)[1].removesuffix(".py").replace("/", ".")
        package = module.removesuffix(".__init__") if module.endswith(".__init__") else module.rpartition(".")[0]
        for name in set(unguarded_imports(ast.parse(text, filename=where), package)):
            if name in LEFT_OUT_MODULES or name.startswith(tuple(f"{m}." for m in LEFT_OUT_MODULES)):
                problems.append(f"{where} imports {name}, which the image leaves out")
            elif name.split(".")[0] in dev_only:
                problems.append(f"{where} imports {name}, of the dev-only {dev_only[name.split('.')[0]]}")
    assert problems == []


# The checkout's editable install (a finder on sys.meta_path) would still find functions.demo for a
# `functions` package imported from anywhere: the runs below drop it, as the image has none.
WITHOUT_THE_CHECKOUT = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
                        "if not getattr(f, '__module__', '').startswith('__editable__')]; ")


def _python(site: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_THE_CHECKOUT + code, *args], capture_output=True, text=True,
                          timeout=120, cwd=site, env={**os.environ, "PYTHONPATH": str(site)})


@pytest.fixture(scope="module")
def installed(wheel: zipfile.ZipFile, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel unpacked (a pure-Python wheel's install, less its scripts), its package the one imported."""
    site = tmp_path_factory.mktemp("site")
    wheel.extractall(site)
    proc = _python(site, "import importlib.util, functions, functions.main; "
                         "print(functions.__file__, importlib.util.find_spec('functions.demo'))")
    assert proc.returncode == 0, proc.stderr[-3000:]
    where, demo = proc.stdout.split()
    assert Path(where).is_relative_to(site) and demo == "None", proc.stdout
    return site


@pytest.mark.parametrize("command", [["demo"], ["events", "generate", "--target", "http://127.0.0.1:9/", "--duration", "0.1"]],
                         ids=["demo", "events-generate"])
def test_demo_commands_from_the_wheel_say_the_package_is_left_out(installed: Path, command: list[str], tmp_path: Path) -> None:
    proc = _python(installed, "from functions.cli import main; sys.exit(main(sys.argv[1:]))",
                   *command, "--state", str(tmp_path / "state"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"finops: error: `finops {' '.join(command[:2])}` needs the functions.demo package"), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
