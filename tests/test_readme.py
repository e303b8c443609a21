"""Every example of README.md runs as written.

The rule, also stated in README's Development section:

- Each fenced block tagged ```bash, ```python or ```yaml is a test; other fences (the output
  layout) are text. A line ``<!-- readme-test: skip (REASON) -->`` just before a block skips
  it with REASON (blocks that need a cluster, or that are the commands running this test).
- Paths are substituted only through one placeholder: the README's absolute paths under
  ``/data/`` mean the test's sandbox ``<tmp>/data/``. The test makes before any block runs:
  ``/data/bids`` (a phantom human study: ketamine-human, 8 subjects, baseline + 24 h or 7 d,
  8 mm voxels, blood for all) and ``/data/atlas_dseg.nii.gz`` / ``.tsv`` (the segmentation of
  sub-01's baseline, an atlas on the PET grid). Everything else under ``/data/`` (``/data/rat``,
  ``/data/out``) is made by the blocks themselves. Relative paths are relative to the sandbox.
- A ```yaml block whose first line is ``# NAME.yaml`` is written to ``<sandbox>/NAME.yaml``
  before any block runs (the bash examples use it with ``--config``); its own test reads it
  with the pipeline's configuration reader, which checks every key and model option.
- Blocks run in README order in one sandbox, each in its own process: bash with
  ``set -euo pipefail`` and the environment's ``sv2a`` on PATH, python as a script
  (``python block.py``, so multiprocessing ``if __name__ == "__main__":`` guards matter).
  Later blocks use what earlier ones wrote, so run the whole file, not one block of it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PLACEHOLDER = "/data/"
LANGS = ("bash", "python", "yaml")
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<reason>.+)\)\s*-->")
FILE_NAME = re.compile(r"^#\s*(?P<name>[\w.-]+\.ya?ml)\b")
BLOCK_TIMEOUT_S = 600

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    lang: str
    line: int          # 1-based line of the opening fence
    text: str
    skip: str | None   # reason from a readme-test skip marker, or None

    @property
    def id(self) -> str:
        return f"{self.lang}-line{self.line}"

    @property
    def file_name(self) -> str | None:
        m = FILE_NAME.match(self.text) if self.lang == "yaml" else None
        return m.group("name") if m else None


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` in order (all languages), with their skip markers."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        skip = SKIP.search(prev)
        blocks.append(Block(m.group(1), start + 1, "\n".join(lines[start + 1:j]) + "\n",
                            skip.group("reason") if skip else None))
        i = j + 1
    return blocks


BLOCKS = [b for b in readme_blocks(README.read_text(encoding="utf-8")) if b.lang in LANGS]


def test_readme_has_runnable_blocks():
    # the parser finds the examples; skips stay few (each needs a reason in the README)
    langs = {b.lang for b in BLOCKS}
    assert langs == set(LANGS), langs
    skipped = [b for b in BLOCKS if b.skip]
    assert len(skipped) <= 4, [(b.id, b.skip) for b in skipped]
    names = [b.file_name for b in BLOCKS if b.lang == "yaml"]
    assert all(names), "every yaml block's first line must be '# NAME.yaml'"


def _substitute(text: str, sandbox: Path) -> str:
    return text.replace(PLACEHOLDER, f"{sandbox}/data/")


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    env = dict(os.environ, MPLBACKEND="Agg",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=BLOCK_TIMEOUT_S)
    assert done.returncode == 0, (f"README {what} failed (exit {done.returncode})\n"
                                  f"--- stdout\n{done.stdout[-4000:]}\n"
                                  f"--- stderr\n{done.stderr[-6000:]}")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """The README's /data/ world: a small human phantom study and an atlas; the yaml files."""
    box = tmp_path_factory.mktemp("readme")
    data = box / "data"
    data.mkdir()
    _run([sys.executable, "-m", "sv2a.cli", "phantom", str(data / "bids"),
          "--design", "ketamine-human", "--subjects", "8", "--seed", "1", "--voxel-size", "8",
          "--nprocs", "1"], box, "sandbox phantom")
    anat = data / "bids" / "sub-01" / "ses-baseline" / "anat"
    shutil.copy(anat / "sub-01_ses-baseline_dseg.nii.gz", data / "atlas_dseg.nii.gz")
    shutil.copy(anat / "sub-01_ses-baseline_dseg.tsv", data / "atlas_dseg.tsv")
    for b in BLOCKS:
        if b.lang == "yaml" and b.file_name:
            (box / b.file_name).write_text(_substitute(b.text, box), encoding="utf-8")
    return box


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_block(block: Block, sandbox: Path):
    if block.skip:
        pytest.skip(f"README marks it: {block.skip}")
    code = _substitute(block.text, sandbox)
    if block.lang == "yaml":
        from sv2a.pipeline.config import resolve_config

        assert block.file_name, f"README line {block.line}: name the file on the first line"
        resolve_config(config_file=sandbox / block.file_name)  # raises ConfigError if wrong
        return
    script = sandbox / f"readme_{block.id}.{'sh' if block.lang == 'bash' else 'py'}"
    if block.lang == "bash":
        script.write_text("set -euo pipefail\n" + code, encoding="utf-8")
        _run(["bash", str(script)], sandbox, f"bash block at line {block.line}")
    else:
        script.write_text(code, encoding="utf-8")
        _run([sys.executable, str(script)], sandbox, f"python block at line {block.line}")
