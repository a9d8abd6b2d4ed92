"""Run one Markdown page's code blocks as a reader would, in order: `python doc_session.py PAGE`.

- A ```python block whose first line is a comment naming a file (`# myapp/jobs.py`) is saved to
  that file, relative to the current directory; any other ```python block runs in one session
  shared by the page's blocks, as if pasted into one `python` prompt.
- A ```bash block runs in `bash -e`, in the current directory. A `pgqueue work` line gets
  `--stop-when-empty` added: a worker otherwise runs until Ctrl-C, where the reader stops it.
- A block right after `<!-- not run: REASON -->` is skipped; so is every block in a language that
  is not a command or program (`text` for output, `ini`/`yaml`/`cron` for files, `sql` that
  tests/integration/test_dashboards.py and tests/unit/test_roles_sql.py run).

Each block's output goes to stdout after a `--- PAGE:LINE` header; the first block that fails
(an exception, a non-zero exit) stops the run with exit 1.

tests/integration/test_docs_examples.py runs this once per page, against its test database.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

RUN = {"python", "bash"}
NOT_RUN = {"text", "ini", "yaml", "cron", "sql"}
_FENCE = re.compile(r"^```(\S*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_MARKER = re.compile(r"<!--\s*not run:(.*?)-->")
_FILE_COMMENT = re.compile(r"^#\s*([\w./-]+\.py)\s*$")
BLOCK_TIMEOUT = 60


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language, the page line of its opening fence, its text, and the
    reason given by a `<!-- not run: ... -->` marker on the line above it (None: unmarked)."""

    language: str
    line: int
    text: str
    not_run: str | None

    @property
    def file(self) -> str | None:
        """The file a python block is saved to, named by its first line, or None."""
        first = self.text.split("\n", 1)[0]
        match = _FILE_COMMENT.match(first) if self.language == "python" else None
        return match.group(1) if match else None


def blocks(page: Path) -> list[Block]:
    """Every fenced block of `page`, in order."""
    source = page.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(source):
        line = source.count("\n", 0, match.start()) + 1
        above = source[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _MARKER.fullmatch(above.strip())
        reason = marker.group(1).strip() if marker else None
        found.append(Block(match.group(1), line, match.group(2), reason))
    return found


def markers(page: Path) -> list[tuple[int, str]]:
    """(line, reason) of every `not run` marker on `page`: a line of its own (one quoted in the
    prose, inside backticks, is not a marker)."""
    found = []
    for number, text in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        match = _MARKER.fullmatch(text.strip())
        if match:
            found.append((number, match.group(1).strip()))
    return found


def shell_script(text: str) -> str:
    """A bash block as run here: continuation lines joined, `pgqueue work` told to stop once the
    queues are empty."""
    lines = []
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True) if line.lstrip().startswith("pgqueue ") else []
        if words[:2] == ["pgqueue", "work"] and "--stop-when-empty" not in words:
            line = shlex.join([*words, "--stop-when-empty"])
        lines.append(line)
    return "\n".join(lines) + "\n"


def run(page: Path) -> int:
    session: dict[str, object] = {"__name__": "__main__"}
    for block in blocks(page):
        if block.not_run is not None or block.language not in RUN:
            continue
        print(f"--- {page.name}:{block.line} ({block.language})", flush=True)
        if block.file is not None:
            target = Path(block.file)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text, encoding="utf-8")
            continue
        if block.language == "python":
            # Padded so that a traceback's line numbers are the page's.
            code = compile("\n" * block.line + block.text, str(page), "exec")
            try:
                exec(code, session)
            except BaseException:
                traceback.print_exc()
                print(f"FAILED: {page.name}:{block.line}", flush=True)
                return 1
            sys.stdout.flush()
            continue
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", shell_script(block.text)],
            check=False,
            timeout=BLOCK_TIMEOUT,
        )
        if result.returncode != 0:
            print(f"FAILED: {page.name}:{block.line} exited {result.returncode}", flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.path[0] = ""  # as in an interactive session: modules in the current directory, not ours
    sys.exit(run(Path(sys.argv[1]).resolve()))
