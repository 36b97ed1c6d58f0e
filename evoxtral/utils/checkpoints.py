"""Where a Trainer run resumes: the newest checkpoint a kill did not cut short (SFT, every RAFT round, FER)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from evoxtral.utils.logging import get_logger

logger = get_logger(__name__)


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest `checkpoint-N` whose trainer_state.json reads back.

    The Trainer writes that file last, so a checkpoint a kill cut short lacks it (or holds half of it) and is
    passed over: resuming from it would fail on the missing optimizer or RNG state.
    """
    folders = [path for path in Path(output_dir).glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", path.name)]
    for folder in sorted(folders, key=lambda path: int(path.name.split("-")[1]), reverse=True):
        try:
            json.loads((folder / "trainer_state.json").read_text())
        except (OSError, ValueError):
            logger.info("Skipping %s: the run stopped while saving it", folder)
            continue
        return str(folder)
    return None


def checkpoint_to_resume(output_dir: str | os.PathLike, resume_from_checkpoint: str | None, auto_resume: bool):
    """The checkpoint a run continues from: the one asked for, else (with ``auto_resume``) the newest complete one
    in ``output_dir``, else None."""
    checkpoint = resume_from_checkpoint
    if checkpoint is None and auto_resume:
        checkpoint = last_complete_checkpoint(output_dir)
    if checkpoint is not None:
        logger.info("Resuming from %s", checkpoint)
    return checkpoint
