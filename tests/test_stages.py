"""The stage runner behind `make demo` and the learning check: a finished stage whose recipe changed, or whose
input stage finished after it, runs again; a stage that keeps its own cache is rerun without removing it."""

import os
import sys
import time
from pathlib import Path

from evoxtral.utils.stages import Stage, run_stages


def _writer(folder: Path, name: str, **options) -> Stage:
    code = (
        f"import pathlib; p = pathlib.Path({str(folder)!r}); p.mkdir(parents=True, exist_ok=True); "
        "(p / 'done').write_text('ok')"
    )
    return Stage(name, [sys.executable, "-c", code], f"make {name}", folder, ("done",), **options)


def _age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def test_a_changed_recipe_reruns_its_stage_and_what_depends_on_it(tmp_path, capsys):
    recipe = tmp_path / "b.yaml"
    recipe.write_text("steps: 1\n")
    first = _writer(tmp_path / "a", "a")
    second = _writer(tmp_path / "b", "b", depends_on=("a",), inputs=(recipe,))
    third = _writer(tmp_path / "c", "c", depends_on=("b",))
    stages = [first, second, third]
    run_stages(stages, tmp_path, tmp_path / "logs", tmp_path / "stages.json")
    for name, seconds in (("a", 30), ("b", 20), ("c", 10)):
        _age(tmp_path / name / "done", seconds)
    _age(recipe, 40)
    (tmp_path / "c" / "keep.txt").write_text("from the first run")

    run_stages(stages, tmp_path, tmp_path / "logs", tmp_path / "stages.json")
    assert capsys.readouterr().out.count("done already") == 3

    recipe.write_text("steps: 2\n")  # newer than b's output
    run_stages(stages, tmp_path, tmp_path / "logs", tmp_path / "stages.json")
    out = capsys.readouterr().out
    assert "a: done already" in out and f"{os.path.relpath(recipe)} changed since it ran" in out
    assert "b rebuilt in this run" in out and not (tmp_path / "c" / "keep.txt").exists()


def test_an_input_stage_that_finished_later_makes_a_stage_stale(tmp_path, capsys):
    first = _writer(tmp_path / "a", "a")
    second = _writer(tmp_path / "b", "b", depends_on=("a",))
    run_stages([first, second], tmp_path, tmp_path / "logs", tmp_path / "stages.json")
    _age(tmp_path / "b" / "done", 60)  # a (rebuilt by an earlier, interrupted run) is newer than b
    run_stages([first, second], tmp_path, tmp_path / "logs", tmp_path / "stages.json")
    assert "b: a changed since it ran" in capsys.readouterr().out


def test_a_stage_without_fresh_start_keeps_its_folder(tmp_path, capsys):
    recipe = tmp_path / "data.yaml"
    recipe.write_text("clips: 1\n")
    stage = _writer(tmp_path / "data", "data", inputs=(recipe,), fresh_start=False)
    run_stages([stage], tmp_path, tmp_path / "logs", tmp_path / "stages.json")
    (tmp_path / "data" / "cache.bin").write_text("expensive")
    _age(tmp_path / "data" / "done", 60)
    recipe.write_text("clips: 2\n")
    run_stages([stage], tmp_path, tmp_path / "logs", tmp_path / "stages.json")
    assert "done already" not in capsys.readouterr().out
    assert (tmp_path / "data" / "cache.bin").exists()
