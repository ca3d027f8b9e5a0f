"""scripts/check_readme.py: the README's blocks run as written on a fresh copy (issue 19, section 5).

The fast tests pin the checker's rules on small READMEs; the slow one runs the real README.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_readme.py"
_spec = importlib.util.spec_from_file_location("check_readme", SCRIPT)
assert _spec is not None and _spec.loader is not None
check_readme = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("check_readme", check_readme)  # dataclasses look their module up
_spec.loader.exec_module(check_readme)

SAMPLE = '''# Sample

<!-- check-readme: skip (installs things) -->
```bash
pip install something
```

```python
# needs an API key: OPENAI_API_KEY
Pipeline(model="openai:gpt-4o-mini", task=task)
```

```yaml
# conf/settings.yaml
a: 1
```

```yaml
just: an example
```

```bash
test -f conf/settings.yaml && echo written
```

```python
from openautoglm import Task, Pipeline
out = Pipeline(model="fake", task=Task(name="s", template="Review: {text}", labels=["positive", "negative"]),
               store=False).run(text="a positive film")
assert out["label"] == "positive", out
```

<!-- check-readme: server http://127.0.0.1:1/ -->
```bash
openautoglm serve
```
'''


def actions(markdown: str) -> list[tuple[str, str]]:
    return [b.action() for b in check_readme.parse(markdown)]


def test_blocks_are_run_written_skipped_or_ignored_by_the_rules() -> None:
    assert actions(SAMPLE) == [
        ("skip", "installs things"),
        ("skip", "needs an API key: OPENAI_API_KEY"),
        ("write", "conf/settings.yaml"),
        ("ignore", "yaml"),
        ("run", ""),
        ("run", ""),
        ("server", "http://127.0.0.1:1/"),
    ]
    assert [b.line for b in check_readme.parse(SAMPLE)] == [4, 8, 13, 18, 22, 26, 34]


def test_an_unmarked_block_that_needs_the_network_is_reported() -> None:
    (marked, unmarked) = check_readme.parse('```python\n# needs a key\nm = "zhipu:glm-4"\n```\n\n'
                                            '```bash\nopenautoglm run p.yaml --model qwen:qwen-plus\n```\n')
    assert marked.unmarked_network() is None
    assert unmarked.unmarked_network() == "qwen:"


def test_the_readme_marks_every_block_that_needs_a_key_or_a_server() -> None:
    blocks = check_readme.parse((ROOT / "README.md").read_text(encoding="utf-8"))
    assert [b.line for b in blocks if b.unmarked_network()] == []
    found = {b.action()[0] for b in blocks}
    assert {"run", "skip", "write", "server"} <= found
    assert all(b.action()[1] for b in blocks if b.action()[0] == "skip")  # every skip says why


def test_a_run_writes_files_runs_blocks_in_order_and_fails_on_an_error(tmp_path: Path) -> None:
    good = tmp_path / "README.md"
    good.write_text(SAMPLE.split("<!-- check-readme: server")[0], encoding="utf-8")
    done = subprocess.run([sys.executable, str(SCRIPT), str(good)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped: needs an API key: OPENAI_API_KEY" in done.stdout
    assert "2 blocks ran, 0 failed, 2 skipped, 1 files written" in done.stdout
    bad = tmp_path / "BAD.md"
    bad.write_text("```bash\necho before\nfalse\necho after\n```\n", encoding="utf-8")
    done = subprocess.run([sys.executable, str(SCRIPT), str(bad)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "BAD.md:1 bash: FAILED" in done.stdout and "after" not in done.stdout.split(
        "--- output (tail) ---")[1]


def test_a_server_block_that_never_answers_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    block = check_readme.Block(1, "bash", "sleep 30\n", ("server", "http://127.0.0.1:9/"))
    monkeypatch.setattr(check_readme, "SERVER_START_S", 2)
    ok, output = check_readme.run_server(block, 0, tmp_path, check_readme.environment())
    assert ok is False and "never answered" in output


@pytest.mark.slow
def test_the_readme_runs_as_written() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert "skipped: needs an API key" in done.stdout  # and says which blocks it did not run
    assert " 0 failed," in done.stdout
