"""The recipe a run was configured with, kept next to the weights (recipe.yaml) and quoted in the model card."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import yaml


def recipe_from_argv(argv: list[str]) -> str:
    """The recipe a command line ran: the `--config` YAML as written, then the flags that override it."""
    argv = list(argv)
    text = ""
    if "--config" in argv:
        at = argv.index("--config")
        text = Path(argv[at + 1]).read_text().rstrip() + "\n"
        del argv[at : at + 2]
    if argv:
        text += f"# command-line overrides: {shlex.join(argv)}\n"
    return text


def write_recipe(output_dir: str | os.PathLike, recipe: str | None, settings: dict[str, Any]) -> str:
    """Write recipe.yaml: the text that configured the run, or, when the run was not started from a recipe (a
    library call), its resolved settings. Returns what was written."""
    recipe = recipe or yaml.safe_dump(settings, sort_keys=False)
    (Path(output_dir) / "recipe.yaml").write_text(recipe)
    return recipe
