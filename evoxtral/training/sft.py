"""Supervised fine-tuning of Voxtral for tagged transcription with TRL's SFTTrainer (the logic of recipes/sft.py).

The rows stay raw audio + tagged text; the Voxtral collator builds prompts, labels and log-mel features batch by
batch, so TRL's dataset preparation is skipped (`skip_prepare_dataset`, `remove_unused_columns=False`,
`max_length=None`) and the processor is the processing class. LoRA goes where evoxtral.model.lora says: the
language model's attention and MLP projections plus the multi-modal projector; the audio encoder stays frozen and
LoRA-free unless `lora_on_audio_encoder` is set.
"""

from __future__ import annotations

import dataclasses

import datasets
from peft import LoraConfig, PeftModel
from transformers import set_seed
from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, SFTConfig, SFTTrainer

from evoxtral.configs import VoxtralSFTArguments
from evoxtral.data.splits import load_training_rows, prepare_rows
from evoxtral.model.collator import VoxtralTranscriptionCollator
from evoxtral.model.loading import load_model_and_processor
from evoxtral.model.lora import voxtral_lora_config
from evoxtral.publishing.hub import push_folder_to_hub
from evoxtral.publishing.model_card import key_settings, write_model_card
from evoxtral.publishing.recipe import write_recipe
from evoxtral.publishing.summaries import log_sft_summary
from evoxtral.training.callbacks import GenerationEvalCallback
from evoxtral.training.fast_paths import add_fast_path_columns, add_precomputed_features, precomputed_features_column
from evoxtral.training.lifecycle import end_trainer, logged_evaluations, save_final_model
from evoxtral.utils.checkpoints import checkpoint_to_resume
from evoxtral.utils.logging import get_logger, setup_logging

logger = get_logger(__name__)

# What the collator needs of TRL: it builds every tensor from raw rows, so TRL must leave the rows (their columns,
# their length) alone.
COLLATOR_SETTINGS = {"max_length": None, "remove_unused_columns": False}


def load_sft_model(
    model_args: ModelConfig,
    sft_args: VoxtralSFTArguments,
    *,
    model_name_or_path: str | None = None,
    adapter: str | None = None,
    device: str | None = None,
):
    """The model to train and its processor. An adapter (`adapter`, or a `model_name_or_path` folder holding
    one) stays trainable: RAFT continues the SFT adapter this way."""
    model, processor = load_model_and_processor(
        model_name_or_path or model_args.model_name_or_path,
        adapter=adapter,
        dtype=model_args.dtype or "auto",
        attn_implementation=model_args.attn_implementation,
        device=device,
        trainable=True,
        random_init=sft_args.random_init,
    )
    if not isinstance(model, PeftModel) and not model_args.use_peft and sft_args.freeze_audio_encoder:
        model.model.audio_tower.requires_grad_(False)
    return model, processor


def prepare_sft_dataset(
    dataset: datasets.Dataset, sft_args: VoxtralSFTArguments, processor, limit: int | None, num_proc: int | None
) -> datasets.Dataset:
    """Rows SFT trains or evaluates on (see data.splits.prepare_rows), with log-mel features when asked: what a RAFT
    round trains on, once its targets are chosen."""
    dataset = prepare_rows(dataset, audio_column=sft_args.audio_column, text_column=sft_args.text_column, limit=limit)
    return add_precomputed_features(dataset, sft_args, processor, num_proc)


def build_sft_trainer(
    script_args: ScriptArguments,
    training_args: SFTConfig,
    model_args: ModelConfig,
    mixture: DatasetMixtureConfig,
    sft_args: VoxtralSFTArguments,
) -> tuple[SFTTrainer, GenerationEvalCallback | None]:
    """Model, data, collator, LoRA and the generation-based evaluation, wired into TRL's SFTTrainer."""
    set_seed(training_args.seed)
    model, processor = load_sft_model(model_args, sft_args)
    train_rows, eval_rows = load_training_rows(
        script_args,
        mixture,
        training_args.seed,
        audio_column=sft_args.audio_column,
        text_column=sft_args.text_column,
        max_train_samples=sft_args.max_train_samples,
        max_eval_samples=sft_args.max_eval_samples,
        with_eval=training_args.eval_strategy != "no",
        weighted=sft_args.dataset_mixture,
    )
    train_dataset, eval_dataset = add_fast_path_columns(
        train_rows, eval_rows, model, processor, training_args, model_args, sft_args
    )
    return make_sft_trainer(
        model,
        processor,
        training_args,
        sft_args,
        train_dataset,
        eval_dataset,
        peft_config=voxtral_lora_config(model_args, sft_args),
    )


def with_collator_settings(training_args: SFTConfig) -> SFTConfig:
    """A copy of ``training_args`` with `COLLATOR_SETTINGS` and `skip_prepare_dataset`; the caller's object is left
    as it is. A value the recipe set to something else is overridden with a warning."""
    defaults = {spec.name: spec.default for spec in dataclasses.fields(training_args)}
    for name, needed in COLLATOR_SETTINGS.items():
        value = getattr(training_args, name)
        if value != needed and value != defaults.get(name):
            logger.warning("%s: %r replaced by %r, the Voxtral collator builds every row itself", name, value, needed)
    dataset_kwargs = dict(training_args.dataset_kwargs or {})
    if dataset_kwargs.get("skip_prepare_dataset") is False:
        logger.warning("dataset_kwargs.skip_prepare_dataset: false replaced by true, the collator prepares the rows")
    dataset_kwargs["skip_prepare_dataset"] = True
    return dataclasses.replace(training_args, dataset_kwargs=dataset_kwargs, **COLLATOR_SETTINGS)


def make_sft_trainer(
    model,
    processor,
    training_args: SFTConfig,
    sft_args: VoxtralSFTArguments,
    train_dataset: datasets.Dataset,
    eval_dataset: datasets.Dataset | None = None,
    *,
    peft_config: LoraConfig | None = None,
) -> tuple[SFTTrainer, GenerationEvalCallback | None]:
    """TRL's SFTTrainer on prepared rows (see `prepare_sft_dataset`) with the Voxtral collator and the
    generation-based evaluation; RAFT trains through this too, on a model that already carries its adapter.
    The trainer gets a copy of `training_args` with the settings the collator needs (see `with_collator_settings`)."""
    trainer = SFTTrainer(
        model=model,
        args=with_collator_settings(training_args),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        data_collator=VoxtralTranscriptionCollator(
            processor,
            audio_column=sft_args.audio_column,
            text_column=sft_args.text_column,
            features_column=precomputed_features_column(train_dataset),
            language=sft_args.language,
        ),
        peft_config=peft_config,
    )
    generation_eval = None
    if eval_dataset is not None and sft_args.generation_eval_samples > 0:
        generation_eval = GenerationEvalCallback(
            trainer,
            eval_dataset.select(range(min(sft_args.generation_eval_samples, len(eval_dataset)))),
            audio_column=sft_args.audio_column,
            text_column=sft_args.text_column,
            language=sft_args.language,
            max_new_tokens=sft_args.generation_max_new_tokens,
            protocol=sft_args.bench_protocol,
        )
        trainer.add_callback(generation_eval)
    parameters = list(trainer.model.parameters())
    trainable, total = sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters)
    logger.info("Trainable parameters: %s of %s (%.2f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return trainer, generation_eval


def run_sft(
    script_args: ScriptArguments,
    training_args: SFTConfig,
    model_args: ModelConfig,
    mixture: DatasetMixtureConfig,
    sft_args: VoxtralSFTArguments,
    recipe: str | None = None,
) -> SFTTrainer:
    """Train (resuming when a checkpoint exists), then save the adapter or model with its processor, the model
    card and the recipe (`recipe`: the text that configured the run, see `recipe_from_argv`), push when asked."""
    setup_logging(training_args)
    trainer, generation_eval = build_sft_trainer(script_args, training_args, model_args, mixture, sft_args)
    checkpoint = checkpoint_to_resume(
        training_args.output_dir, training_args.resume_from_checkpoint, sft_args.auto_resume
    )
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_metrics("train", train_result.metrics)

    evaluated_at = [entry["step"] for entry in logged_evaluations(trainer)]
    eval_metrics = {}
    if trainer.eval_dataset is not None and evaluated_at[-1:] != [trainer.state.global_step]:
        eval_metrics = trainer.evaluate()  # the final weights, unless the last step was just evaluated
    save_final_model(trainer, training_args.output_dir)
    if trainer.is_world_process_zero():
        bench_scores = generation_eval.latest_scores if generation_eval else {}
        evaluations = logged_evaluations(trainer)
        settings = key_settings(script_args, training_args, model_args, sft_args)
        write_model_card(
            training_args.output_dir,
            settings=settings,
            recipe=write_recipe(training_args.output_dir, recipe, settings),
            bench_scores=bench_scores,
            bench_samples=len(generation_eval.audios) if generation_eval else 0,
            bench_protocol=sft_args.bench_protocol,
            results={**train_result.metrics, **(evaluations[-1] if evaluations else {}), **eval_metrics},
            is_adapter=model_args.use_peft,
        )
        if training_args.push_to_hub:
            push_folder_to_hub(training_args, stage="SFT")
        log_sft_summary(
            training_args.output_dir,
            global_step=trainer.state.global_step,
            train_metrics=train_result.metrics,
            evaluations=evaluations,
            bench_scores=bench_scores,
            is_adapter=model_args.use_peft,
        )
    end_trainer(trainer)
    return trainer
