"""What SFT and every RAFT round do at the end of training: read back the logged evaluations, save the final
weights so that they reload, and finish the trainer. Where a run resumes is evoxtral.utils.checkpoints."""

from __future__ import annotations

import os

from transformers import Trainer

from evoxtral.model.processor import write_tokenizer_config


def logged_evaluations(trainer: Trainer) -> list[dict[str, float]]:
    """The evaluation entries of the trainer's log history (those with an eval_loss), oldest first."""
    return [entry for entry in trainer.state.log_history if "eval_loss" in entry]


def save_final_model(trainer: Trainer, output_dir: str | os.PathLike) -> None:
    """Save the weights with generation's KV cache back on, and (main process) the tokenizer config that lets the
    processor folder reload with AutoProcessor."""
    trainer.model.config.use_cache = True
    trainer.save_model(str(output_dir))
    if trainer.is_world_process_zero():
        write_tokenizer_config(output_dir)


def end_trainer(trainer: Trainer | None) -> None:
    """Finish the trackers and destroy the process group (transformers >= 5.18 has Trainer.end)."""
    if trainer is not None and hasattr(trainer, "end"):
        trainer.end()
