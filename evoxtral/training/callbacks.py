"""Callbacks of the SFT trainer (RAFT trains through it too): the generation-based evaluation."""

from __future__ import annotations

import datasets
from transformers import TrainerCallback
from transformers.integrations import is_deepspeed_zero3_enabled
from trl import SFTTrainer

from evoxtral.data.splits import decodable_clips
from evoxtral.model.inference import transcribe
from evoxtral.scoring.evoxtral_bench import compute_metrics
from evoxtral.utils.logging import get_logger

logger = get_logger(__name__)


class GenerationEvalCallback(TrainerCallback):
    """At each evaluation, transcribe N validation clips and score them with the Evoxtral-Bench core.

    The Trainer's own evaluation only sees teacher-forced logits; this measures what the model actually writes.
    The scores join the evaluation metrics (so `metric_for_best_model: eval_tag_f1` works) and go to every
    configured tracker through `trainer.log`.
    """

    def __init__(
        self,
        trainer: SFTTrainer,
        eval_rows: datasets.Dataset,
        *,
        audio_column: str,
        text_column: str,
        language: str,
        max_new_tokens: int,
        protocol: str,
    ):
        self.trainer = trainer
        audios = eval_rows[audio_column]
        keep, _ = decodable_clips(audios, [f"validation {index}" for index in range(len(audios))])
        self.audios = [audios[index] for index in keep]
        self.references = [eval_rows[text_column][index] for index in keep]
        self.language = language
        self.max_new_tokens = max_new_tokens
        self.protocol = protocol
        self.latest_scores: dict[str, float] = {}

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        # Sharded weights (ZeRO-3, FSDP) need every process in generate; otherwise the main process does it alone.
        sharded = is_deepspeed_zero3_enabled() or self.trainer.is_fsdp_enabled
        if not (sharded or state.is_world_process_zero):
            return
        predictions = transcribe(
            self.trainer.model,
            self.trainer.processing_class,
            self.audios,
            batch_size=args.per_device_eval_batch_size,
            max_new_tokens=self.max_new_tokens,
            language=self.language,
            progress=False,
            **({"synced_gpus": True} if sharded else {}),
        )
        if not state.is_world_process_zero:
            return
        scores = compute_metrics(predictions, self.references, protocol=self.protocol)
        self.latest_scores = {key: value for key, value in scores.items() if isinstance(value, (int, float))}
        prefixed = {f"eval_{key}": value for key, value in self.latest_scores.items()}
        if metrics is not None:
            metrics.update(prefixed)
        self.trainer.log(prefixed)
        logger.info(
            "step %d, validation clip 0\n  reference:  %s\n  prediction: %s",
            state.global_step,
            self.references[0],
            predictions[0],
        )
