"""Documentation examples run: every ```python block of README.md and docs/*.md executes as-is.

Each block runs in a fresh namespace (``__name__ == "__main__"``), with the current directory a
fresh temporary one, matplotlib on the Agg backend, ``torch.manual_seed(0)`` and one torch thread.
Blocks fenced with another language (```bash, ```text, ...) or with none are not run. Test ids are
``<file>#<n>`` (n counts the python blocks of that file from 1); a failing block's traceback shows
its own lines, numbered within the block, under the name ``<file>#<n> (from <file> line L)``.

One thread: on a shared 2-core machine, torch's default of 2 threads made the small training
loops of the examples 10-25x slower (threads spin-waiting for a busy core; measured
docs/zoo.md#1 14.9 s vs 0.7 s, docs/parametrize.md#1 18.9 s vs 0.8 s). The examples themselves do
not depend on the thread count.
"""
from __future__ import annotations

import linecache
import re
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Blocks known to be broken or too slow, with the reason: they are reported to whoever owns the doc,
# and expected to fail (strict: once fixed, the XPASS fails here, so the entry gets removed).
KNOWN_BROKEN: dict[str, str] = {}

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


class Block(NamedTuple):
    file: str  # relative to the repository root
    index: int  # 1-based among the python blocks of the file
    line: int  # 1-based line of the first code line in the file
    code: str

    @property
    def id(self) -> str:
        return f"{self.file}#{self.index}"


def extract_blocks(text: str, file: str = "<doc>") -> list[Block]:
    """The ```python blocks of a markdown text (CommonMark fences: ``` or ~~~, 3+ long, indent <= 3)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or (m["fence"][0] == "`" and "`" in m["info"]):
            i += 1
            continue
        fence, indent = m["fence"], len(m["indent"])
        words = m["info"].strip().split()
        lang = words[0].lower() if words else ""
        start = i + 1
        j = start
        while j < len(lines):
            close = FENCE.match(lines[j])
            if close and close["fence"][0] == fence[0] and len(close["fence"]) >= len(fence) \
                    and not close["info"].strip():
                break
            j += 1
        if lang == "python":
            body = [ln[min(indent, len(ln) - len(ln.lstrip(" "))):] for ln in lines[start:j]]
            blocks.append(Block(file, len(blocks) + 1, start + 1, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def all_blocks() -> list[Block]:
    out = []
    for path in DOCS:
        out += extract_blocks(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())
    return out


BLOCKS = all_blocks()


@pytest.fixture
def doc_env(tmp_path, monkeypatch):
    """A fresh temporary cwd, the repo importable, matplotlib headless, a fixed seed; figures closed after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.syspath_prepend(str(ROOT))
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
    except ImportError:
        matplotlib = None
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)
    if matplotlib is not None and "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


def params():
    for block in BLOCKS:
        marks = []
        if block.id in KNOWN_BROKEN:
            marks.append(pytest.mark.xfail(reason=KNOWN_BROKEN[block.id], strict=True))
        yield pytest.param(block, id=block.id, marks=marks)


@pytest.mark.parametrize("block", list(params()))
def test_doc_block_runs(block: Block, doc_env):
    filename = f"{block.id} (from {block.file} line {block.line})"
    linecache.cache[filename] = (len(block.code), None, block.code.splitlines(keepends=True), filename)
    code = compile(block.code, filename, "exec")
    namespace = {"__name__": "__main__", "__file__": str(doc_env / "doc_block.py")}
    exec(code, namespace)


def test_every_doc_is_scanned_and_the_readme_has_examples():
    names = {b.file for b in BLOCKS}
    assert "README.md" in names
    assert all(p.exists() for p in DOCS)
    assert set(KNOWN_BROKEN) <= {b.id for b in BLOCKS}, "a KNOWN_BROKEN entry names no block"


def test_extractor_runs_python_blocks_only():
    text = "\n".join([
        "# t",
        "```python",
        "a = 1",
        "```",
        "```bash",
        "echo no",
        "```",
        "```text",
        "not python",
        "```",
        "```",
        "no language",
        "```",
        "````python",
        "```",
        "b = 2  # a fence inside a longer fence",
        "```",
        "````",
        "  ```python title=x",
        "  c = 3",
        "  ```",
        "~~~python",
        "d = 4",
        "~~~",
        "```Python",
        "e = 5",
        "```",
    ])
    blocks = extract_blocks(text, "t.md")
    assert [b.code for b in blocks] == ["a = 1\n", "```\nb = 2  # a fence inside a longer fence\n```\n",
                                        "c = 3\n", "d = 4\n", "e = 5\n"]
    assert [b.index for b in blocks] == [1, 2, 3, 4, 5]
    assert blocks[0].line == 3 and blocks[0].id == "t.md#1"
