"""What the docs and notes point at exists, and the generated references are current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_settings_reference_is_current():
    # docs/training.md's settings table is rendered from speechlstm/config.py's
    # field comments; a field added, removed, renamed, re-defaulted or
    # re-commented there changes it.
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "settings_reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, (
        done.stdout + done.stderr + "\nThe settings table in docs/training.md is generated: "
        "run `make docs` (python scripts/settings_reference.py) and commit the result."
    )
