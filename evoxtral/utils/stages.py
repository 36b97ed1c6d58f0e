"""Chains of commands run as a user runs them (``make demo``, the learning check): each stage's files say when it
is done, and the runner works out what is left to do.

A stage is done when all of its ``done_when`` files exist under its output folder; a rerun skips it. A stage killed
before those files exist runs again and resumes inside itself (SFT from its last checkpoint, RAFT from its scored
samples, eval from its predictions). A done stage is stale, and runs again, when a stage it depends on was rebuilt
in this run, or finished after it, or one of its ``inputs`` (its recipe YAML, say) changed after it finished: then
its output folder is removed first (unless ``fresh_start`` is off: the data generator reconciles its own outputs
with changed settings and keeps its clip cache), so that no result mixes old and new inputs.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evoxtral.utils.logging import get_logger

logger = get_logger(__name__)


class StageError(RuntimeError):
    """A stage's command failed; the message names the stage, the command and the end of its log."""


@dataclass(frozen=True)
class Stage:
    name: str
    command: list[str]  # what runs
    shown: str  # the same command as a user types it
    output_dir: Path
    done_when: tuple[str, ...]  # files under output_dir that exist only once the stage has finished
    depends_on: tuple[str, ...] = ()  # names of earlier stages whose outputs this one reads
    inputs: tuple[Path, ...] = ()  # files (its recipe) whose change makes a finished stage stale
    fresh_start: bool = True  # remove the output folder before a stale stage runs again

    def is_done(self) -> bool:
        return all((self.output_dir / name).is_file() for name in self.done_when)

    def finished_at(self) -> float:
        """When the stage last finished: the newest of its done files (0 when it is not done)."""
        return max((self.output_dir / name).stat().st_mtime for name in self.done_when) if self.is_done() else 0.0

    def started_after(self) -> float:
        """A time the stage's last finished run began after: the oldest of its done files."""
        return min((self.output_dir / name).stat().st_mtime for name in self.done_when)


def find_repo_root() -> Path:
    """The folder holding recipes/ and data_gen/: the working directory, or the one this package sits in."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (candidate / "recipes").is_dir() and (candidate / "data_gen" / "generate.py").is_file():
            return candidate
    raise FileNotFoundError("run this from the repository root (the folder holding recipes/ and data_gen/)")


def relative_to_root(root: Path, path: str | os.PathLike) -> Path:
    """A path as the stages (run from ``root``) see it: relative paths are taken from ``root``, as in the YAMLs."""
    absolute = Path(os.path.normpath(root / path))
    try:
        return absolute.relative_to(root)
    except ValueError:
        return absolute


def python_command(python: str, *arguments: str) -> tuple[list[str], str]:
    """A ``python ...`` stage command, and the same as a user types it."""
    return [python, *arguments], shlex.join(["python", *arguments])


def cpu_launcher(num_processes: int, threads: int | None = None) -> list[str]:
    """``accelerate launch`` options for training on this machine's CPU: every core shared among the processes
    (accelerate's own default on CPU can leave a process one thread, which halves a 2-core run)."""
    threads = threads or max(1, (os.cpu_count() or 1) // num_processes)
    return ["--num_processes", str(num_processes), "--num_cpu_threads_per_process", str(threads)]


def accelerate_command(python: str, launcher: Sequence[str], script: str, *options: str) -> tuple[list[str], str]:
    """An ``accelerate launch <launcher> script ...`` stage command, and the same as a user types it."""
    launch = [*launcher, script, *options]
    return [python, "-m", "accelerate.commands.launch", *launch], shlex.join(["accelerate", "launch", *launch])


def data_stage(python: str, root: Path, config: str, output_dir: str) -> Stage:
    """The data generator as a stage: done once its dataset and summary exist. It reconciles its own outputs with
    changed settings (clips are cached by content), so a changed config reruns it without removing its folder."""
    return Stage(
        "data",
        *python_command(python, "data_gen/generate.py", "--config", config, "--output_dir", output_dir),
        root / output_dir,
        ("dataset/dataset_dict.json", "summary.json"),
        inputs=(root / config,),
        fresh_start=False,
    )


def run_logged(command: Sequence[str], log_path: Path, *, cwd: Path, env: Mapping[str, str]) -> int:
    """Run ``command``, showing its output (progress bars included) and appending it to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console = getattr(sys.stdout, "buffer", None)
    with (
        log_path.open("ab") as log,
        subprocess.Popen(command, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process,
    ):
        for chunk in iter(lambda: process.stdout.read1(1 << 16), b""):
            log.write(chunk)
            log.flush()
            if console is None:
                sys.stdout.write(chunk.decode("utf-8", errors="replace"))
            else:
                console.write(chunk)
                console.flush()
    return process.returncode


def log_tail(path: Path, num_lines: int = 25) -> str:
    """The last lines of a log, each progress-bar line shown in its final state."""
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    lines = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return "\n".join([line for line in lines if line.strip()][-num_lines:])


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def stale_because(stage: Stage, earlier: Mapping[str, Stage], rebuilt: set[str]) -> str | None:
    """Why a stage must run again although it may be done (None: it need not)."""
    rebuilt_inputs = sorted(rebuilt.intersection(stage.depends_on))
    if rebuilt_inputs:
        return f"{', '.join(rebuilt_inputs)} rebuilt in this run"
    if not stage.is_done():
        return None
    since = stage.started_after()
    changed = [name for name in stage.depends_on if earlier[name].finished_at() > since]
    changed += [os.path.relpath(path) for path in stage.inputs if path.stat().st_mtime > since]
    return f"{', '.join(changed)} changed since it ran" if changed else None


def run_stages(stages: Sequence[Stage], root: Path, logs_dir: Path, records_path: Path) -> dict[str, dict]:
    """Run the stages in order, skipping those done and not stale; returns each stage's record (command, seconds)."""
    records = read_json(records_path) or {}
    rebuilt: set[str] = set()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    by_name = {stage.name: stage for stage in stages}
    for number, stage in enumerate(stages, 1):
        header = f"[{number}/{len(stages)}] {stage.name}"
        reason = stale_because(stage, by_name, rebuilt)
        if stage.is_done() and reason is None:
            logger.info("%s: done already (%s); delete that folder to run it again", header, stage.output_dir)
            records.setdefault(stage.name, {"command": stage.shown, "seconds": None})
            continue
        if reason is not None and stage.fresh_start and stage.output_dir.exists():
            logger.info("%s: %s, so %s is rebuilt too", header, reason, stage.output_dir)
            shutil.rmtree(stage.output_dir)
        logger.info("%s: %s", header, stage.shown)
        started = time.monotonic()
        log_path = logs_dir / f"{stage.name}.log"
        returncode = run_logged(stage.command, log_path, cwd=root, env=env)
        if returncode != 0 or not stage.is_done():
            problem = f"exited with code {returncode}" if returncode else f"left no {', '.join(stage.done_when)}"
            raise StageError(
                f"stage {stage.name!r} {problem}.\ncommand: {stage.shown}\nlog: {log_path}\n"
                f"last lines:\n{log_tail(log_path)}\nFix the cause and run the same command again: finished "
                "stages are skipped."
            )
        records[stage.name] = {"command": stage.shown, "seconds": round(time.monotonic() - started, 1)}
        rebuilt.add(stage.name)
        records_path.parent.mkdir(parents=True, exist_ok=True)
        records_path.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    return {stage.name: records[stage.name] for stage in stages}
