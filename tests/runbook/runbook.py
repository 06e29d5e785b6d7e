"""The runbook's procedures as the tests run them: extracted from docs/operations.md, run
verbatim in bash, one shell per procedure."""

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "operations.md"

_BLOCK = re.compile(r"^```sh procedure=([a-z0-9-]+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def procedures(text: str | None = None) -> dict[str, list[str]]:
    """Procedure name → its blocks, in the order the runbook gives them."""
    found: dict[str, list[str]] = {}
    for name, body in _BLOCK.findall(RUNBOOK.read_text() if text is None else text):
        found.setdefault(name, []).append(body)
    return found


@dataclass
class Shell:
    """One operator's shell: each block runs in bash, and what it exports carries over."""

    name: str
    env: dict[str, str]
    cwd: Path
    blocks: list[str] = field(init=False)
    ran: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.blocks = procedures()[self.name]
        # `headrace` and `python3` as an operator with the virtualenv activated has them.
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**self.env, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}

    def run_next(self, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the procedure's next block; fails the test unless every command succeeds."""
        block = self.blocks[self.ran]
        self.ran += 1
        with tempfile.NamedTemporaryFile(prefix="runbook-env-") as saved:
            script = f"set -euo pipefail\n{block}\nenv -0 > {saved.name}\n"
            done = subprocess.run(
                ["bash", "-c", script],
                cwd=self.cwd,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            assert done.returncode == 0, (
                f"{self.name} block {self.ran} failed ({done.returncode}):\n{block}\n"
                f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
            )
            pairs = Path(saved.name).read_bytes().decode().split("\0")
        self.env = dict(p.split("=", 1) for p in pairs if "=" in p)
        return done

    def finished(self) -> None:
        """Every block of the procedure ran: a block added to the runbook needs the test too."""
        assert self.ran == len(self.blocks), f"{self.name}: ran {self.ran} of {len(self.blocks)}"
