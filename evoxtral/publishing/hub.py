"""The upload of a finished run's folder to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path

from transformers import TrainingArguments

from evoxtral.utils.logging import get_logger

logger = get_logger(__name__)


def push_folder_to_hub(training_args: TrainingArguments, stage: str) -> str:
    """Upload the final folder (weights, processor, card, recipe) to ``hub_model_id`` (default: the folder's name),
    without the intermediate checkpoints and tracker logs.

    `Trainer.push_to_hub` would regenerate README.md and drop the Evoxtral card, hence the direct upload.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=training_args.hub_token)
    repo_id = training_args.hub_model_id or Path(training_args.output_dir).resolve().name
    repo_id = api.create_repo(repo_id, private=training_args.hub_private_repo, exist_ok=True).repo_id
    api.upload_folder(
        repo_id=repo_id,
        folder_path=training_args.output_dir,
        commit_message=f"Evoxtral {stage}: end of training",
        ignore_patterns=["checkpoint-*", "checkpoint-*/**", "runs/**", "wandb/**"],
    )
    logger.info("Pushed %s to https://huggingface.co/%s", training_args.output_dir, repo_id)
    return repo_id
