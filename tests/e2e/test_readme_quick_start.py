"""The commands of the README and docs/ work as written.

Cases:
- Quick start: `python -m functions.cli demo` (what `./taskw demo` runs, minus the wrapper) exits 0,
  prints the showback summary with its per-provider section naming the demo's providers, and reports
  the to-the-cent reconciliation with the source export;
- Querying: the `finops sql` command of docs/sql-dialect.md's ```bash block (tags filtered by key) runs
  against a stack whose `focus_costs` table was filled by a real cycle, and returns rows.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_stack import REPO, E2EStack, database_docs, esc, secret

from functions.demo.demo_apis import DemoCostApi

pytestmark = pytest.mark.slow


def page_commands(page: str, prefix: str) -> list[list[str]]:
    """The lines of a page's ```bash blocks that start with `prefix`, split like a shell would."""
    text = (REPO / page).read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    return [shlex.split(line, comments=True) for b in blocks for line in b.splitlines() if line.startswith(prefix)]


def test_quick_start_demo_exits_0_with_providers_and_reconciliation(tmp_path: Path) -> None:
    assert any(cmd[:2] == ["./taskw", "demo"] for cmd in page_commands("README.md", "./taskw demo"))
    proc = subprocess.run([sys.executable, "-m", "functions.cli", "demo"], capture_output=True, text=True,
                          timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    provider = proc.stdout.split("By provider", 1)
    assert len(provider) == 2, proc.stdout
    section = provider[1].split("\n\n", 1)[0]
    for name in ("AWS", "Microsoft", "Google Cloud"):
        assert name in section, section
    assert "reconciled" in proc.stderr and "to the cent" in proc.stderr, proc.stderr


def test_readme_tags_query_returns_rows(stack: E2EStack, tmp_path: Path) -> None:
    [cmd] = page_commands("docs/sql-dialect.md", "finops sql")
    assert cmd[:2] == ["finops", "sql"] and "tags[" in cmd[-1], cmd
    with DemoCostApi(600, seed=2, data_dir=tmp_path / "api") as api:
        stack.apply(secret("readme-api", {"server-url": api.url, "token": api.token}), *database_docs(),
                    esc("readme", "/focus/export.csv", "readme-api", "focus_costs"))
    args = cmd[2:]
    if "--state" in args:  # the page's ./.state -> this test's stack
        i = args.index("--state")
        del args[i:i + 2]
    result = stack.finops("sql", *args)
    assert result.rc == 0, result.text
    count = re.search(r"\((\d+) rows?\)", result.out)
    assert count and int(count.group(1)) > 0, result.out
    assert "team" in result.out.splitlines()[0]
