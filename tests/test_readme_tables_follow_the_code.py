"""The README is a map of docs/, and the reference tables of docs/ are the code's own.

Cases:
- the generated tables of docs/ (settings, events, custom resources, targets) are what
  `python -m functions.tooling.docgen docs` writes now; `--check` exits 0 on them, and on a copy
  with one table edited by hand exits 1 naming that page; a page without its markers is named too;
- the settings table is the settings models' own `markdown_table()`;
- every event type of the catalogue (and every type constant of functions.events) is documented;
- the quick start is exactly the two commands; the README stays under 10 KB;
- every relative link of the README and of docs/ leads to a file that exists and, with `#`, to a
  heading of that page; the README links only to docs/ pages, and to every one of them;
- every repository path (`functions/...`, `crds/...`, globs too) and `python -m` module they name exists;
- docs/architecture.md states the layers of the import-linter contract in pyproject.toml.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import tomllib
from pathlib import Path

import pytest

from functions import events
from functions.tooling import docgen

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
REPO_PATH = re.compile(r"`((?:functions|tests|crds|knative|eventsources|policies|dashboards|schemas|operator|docs)/[^`\s]*)`")


def generated(page: str, name: str) -> str:
    """The text between a table's markers in a docs page."""
    text = (DOCS / page).read_text(encoding="utf-8")
    return text.split(docgen.start_marker(name) + "\n", 1)[1].split("\n" + docgen.END, 1)[0]


def test_generated_tables_are_current() -> None:
    assert docgen.stale(DOCS) == [], "regenerate: python -m functions.tooling.docgen docs"
    assert docgen.main(["--check", str(DOCS)]) == 0


def test_check_names_a_stale_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    page = docs / "events.md"
    page.write_text(page.read_text(encoding="utf-8").replace("`events.PING`", "`events.TICK`"), encoding="utf-8")
    assert docgen.main(["--check", str(docs)]) == 1
    assert f"out of date: {page}" in capsys.readouterr().err
    assert docgen.main([str(docs)]) == 0 and docgen.stale(docs) == []
    assert page.read_text(encoding="utf-8") == (DOCS / "events.md").read_text(encoding="utf-8")


def test_a_page_without_its_markers_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    page = docs / "settings.md"
    page.write_text(page.read_text(encoding="utf-8").replace(docgen.END, ""), encoding="utf-8")
    assert docgen.main(["--check", str(docs)]) == 1
    assert str(page) in capsys.readouterr().err


def test_settings_table_is_generated_from_the_models() -> None:
    from functions.settings.doc import markdown_table

    assert generated("settings.md", "settings") == markdown_table()


def test_every_event_type_is_documented() -> None:
    declared = {v for k, v in vars(events).items() if k.isupper() and isinstance(v, str)
                and (v.startswith(events.PREFIX) and v != events.PREFIX or v == events.PING)}
    assert declared == set(events.CATALOGUE), "every event type constant belongs in events.CATALOGUE"
    table = generated("events.md", "events")
    for type_ in events.CATALOGUE:
        assert f"| `{type_}` |" in table, type_


def test_quick_start_is_the_two_commands() -> None:
    block = README.read_text(encoding="utf-8").split("## Quick start", 1)[1].split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in block.splitlines()[1:] if line.strip()]
    assert commands == ["./taskw demo", "./taskw test"]


def test_readme_is_a_map_under_10_kb() -> None:
    size = len(README.read_bytes())
    assert size < 10 * 1024, f"README.md is {size} bytes: move reference material into docs/"
    targets = {link.split("#", 1)[0] for link in _relative_links(README)}
    assert targets and all(t.startswith("docs/") and t.endswith(".md") for t in targets), targets
    assert {f"docs/{p.name}" for p in DOCS.glob("*.md")} <= targets, "the README's table of contents lists every page"


def test_architecture_states_the_layer_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    [layers] = [c["layers"] for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    line = " -> ".join("|".join(m.strip().removeprefix("functions.") for m in layer.split("|")) for layer in layers)
    assert f"`{line}`" in (DOCS / "architecture.md").read_text(encoding="utf-8"), line


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_lead_to_pages_and_headings_that_exist(page: Path) -> None:
    for link in _relative_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.is_file(), f"{page.name}: {link} names no file"
        if anchor and target.suffix == ".md":
            assert anchor in _anchors(target), f"{page.name}: {link}: no such heading in {target.name}"


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_paths_and_modules_named_exist(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for path in REPO_PATH.findall(text):
        assert list(ROOT.glob(path.rstrip("/"))), f"{page.name} names `{path}`, which does not exist"
    for module in re.findall(r"python -m ([\w.]+)", text):
        assert importlib.util.find_spec(module) is not None, f"{page.name} runs `python -m {module}`, which does not exist"


def _relative_links(page: Path) -> list[str]:
    text = _without_code_blocks(page.read_text(encoding="utf-8"))
    return [link for link in LINK.findall(text) if not re.match(r"[a-z]+:", link)]


def _without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as `-`,
    repeated headings numbered from -1."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _without_code_blocks(page.read_text(encoding="utf-8")), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out
