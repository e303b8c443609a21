"""Regenerate the sv2a demo dataset in this folder (``sv2a demo`` runs on it).

    python demo_data/code/make_demo.py

A phantom [11C]UCB-J ketamine study made by :func:`sv2a.phantom.make_cohort` with the settings
in :data:`sv2a.pipeline.demo.DEMO_SETTINGS`: 2 arms (ketamine 24 h, ketamine 7 d) x 3 subjects
x 2 sessions (baseline + follow-up), posterior cingulate specific binding +5 % at 24 h and
+3 % at 7 d, 7 mm voxels, arterial blood for sub-01, sub-02 and sub-04. ``truth.tsv`` holds the
true parameters. Same seed -> identical files.

This script lives in ``code/``, where BIDS keeps the code that made a dataset (the
bids-validator does not look there); the files BIDS raw data does not define are listed in
the ``.bidsignore`` that :func:`sv2a.phantom.make_cohort` writes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sv2a.pipeline.demo import DEMO_SETTINGS, make_demo_data

if __name__ == "__main__":
    here = Path(__file__).resolve().parents[1]  # the dataset root; this script is in code/
    for p in here.iterdir():  # keep code/ (this script), replace everything else
        if p.name != "code":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    tmp = here / ".tmp_demo"
    make_demo_data(tmp)
    for p in tmp.iterdir():
        p.rename(here / p.name)
    tmp.rmdir()
    print(f"demo dataset written to {here} with {DEMO_SETTINGS}")
