"""Every recipe script starts the way a user runs it: `python recipes/<stage>.py`, from the repository root.

Running a script puts its folder first on sys.path, so a folder in recipes/ named like the core package would
become a namespace package that shadows it (recipe folders are therefore named after models, with hyphens).
"""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(path.name for path in (REPO / "recipes").glob("*.py"))
ENTRY_FOLDERS = ["recipes", "data_gen", "bench", "metrics", "serve"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_recipe_script_imports_the_core_package_and_prints_help(script):
    result = subprocess.run(
        [sys.executable, f"recipes/{script}", "--help"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower()


@pytest.mark.parametrize("folder", ENTRY_FOLDERS)
def test_no_entry_point_folder_holds_a_folder_named_like_the_core_package(folder):
    assert not (REPO / folder / "evoxtral").exists()
