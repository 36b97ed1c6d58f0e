"""Supervised fine-tuning of Voxtral for tagged transcription with TRL's SFTTrainer (the logic of recipes/sft.py).

The rows stay raw audio + tagged text; the Voxtral collator builds prompts, labels and log-mel features batch by
batch, so TRL's dataset preparation is skipped (`skip_prepare_dataset`, `remove_unused_columns=False`,
`max_length=None`) and the processor is the processing class. LoRA targets are explicit: the language model's
attention and MLP projections plus the multi-modal projector. The audio encoder stays frozen and LoRA-free unless
`lora_on_audio_encoder` is set (the original recipe's suffix match `q_proj, k_proj, v_proj` also caught the
encoder's attention, adding 15.7M trainable parameters; that option reproduces it on purpose).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shlex
from pathlib import Path
from typing import Any

import datasets
import yaml
from peft import LoraConfig, PeftModel
from transformers import TrainerCallback, set_seed
from transformers.integrations import is_deepspeed_zero3_enabled
from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, SFTConfig, SFTTrainer

from evoxtral.configs import VoxtralSFTArguments
from evoxtral.data.splits import decodable_clips, load_training_splits, prepare_rows
from evoxtral.model.collator import (
    FEATURES_COLUMN,
    VoxtralTranscriptionCollator,
    add_input_features,
    add_sequence_lengths,
)
from evoxtral.model.encoder_cache import (
    ENCODER_STATES_COLUMN,
    accept_audio_encoder_states,
    add_audio_encoder_states,
    audio_encoder,
)
from evoxtral.model.inference import transcribe
from evoxtral.model.loading import load_model_and_processor
from evoxtral.model.lora import describe_lora, voxtral_lora_config
from evoxtral.model.processor import write_tokenizer_config
from evoxtral.scoring.evoxtral_bench import compute_metrics

logger = logging.getLogger(__name__)

# Trainer samplers that batch rows by the `length_column_name` column.
LENGTH_GROUPED_SAMPLERS = ("group_by_length", "batch_rebalance")


# ---------------------------------------------------------------------------------------------------------------
# Data


def prepare_sft_dataset(
    dataset: datasets.Dataset, sft_args: VoxtralSFTArguments, processor, limit: int | None, num_proc: int | None
) -> datasets.Dataset:
    dataset = prepare_rows(dataset, audio_column=sft_args.audio_column, text_column=sft_args.text_column, limit=limit)
    if sft_args.precompute_features and FEATURES_COLUMN not in dataset.column_names:
        dataset = add_input_features(dataset, processor, audio_column=sft_args.audio_column, num_proc=num_proc)
    return dataset


def add_fast_path_columns(
    train_dataset: datasets.Dataset,
    eval_dataset: datasets.Dataset | None,
    model,
    processor,
    training_args: SFTConfig,
    model_args: ModelConfig,
    sft_args: VoxtralSFTArguments,
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """The columns the throughput options read: each row's length for a length-grouped sampler, and the frozen
    audio encoder's output for `audio_encoder_cache` (which also lets the model take it in place of log-mel
    features)."""
    if training_args.train_sampling_strategy in LENGTH_GROUPED_SAMPLERS:
        collator = VoxtralTranscriptionCollator(
            processor, audio_column=sft_args.audio_column, text_column=sft_args.text_column, language=sft_args.language
        )
        # The Trainer groups evaluation batches by length too (group_by_length), so both splits need the column.
        train_dataset, eval_dataset = (
            add_sequence_lengths(
                dataset,
                collator,
                length_column=training_args.length_column_name,
                num_proc=training_args.dataset_num_proc,
            )
            if dataset is not None and training_args.length_column_name not in dataset.column_names
            else dataset
            for dataset in (train_dataset, eval_dataset)
        )
    if not sft_args.audio_encoder_cache:
        return train_dataset, eval_dataset
    if not model_args.use_peft and not sft_args.freeze_audio_encoder:
        raise ValueError(
            "audio_encoder_cache needs a frozen audio encoder: keep freeze_audio_encoder in full fine-tuning"
        )
    accept_audio_encoder_states(model)
    audio_encoder(model).to(training_args.device)  # where training will run
    with_states = []
    for dataset in (train_dataset, eval_dataset):
        if dataset is not None:
            # Under several processes the first computes and writes the cache files; the others read them.
            with training_args.main_process_first(desc="audio encoder states"):
                dataset = add_audio_encoder_states(
                    dataset,
                    model,
                    processor,
                    audio_column=sft_args.audio_column,
                    features_column=FEATURES_COLUMN if FEATURES_COLUMN in dataset.column_names else None,
                    batch_size=training_args.per_device_eval_batch_size,
                )
        with_states.append(dataset)
    return with_states[0], with_states[1]


def precomputed_features_column(dataset: datasets.Dataset) -> str | None:
    """The column the collator takes in place of decoding audio: encoder states, else log-mel features."""
    return next(
        (column for column in (ENCODER_STATES_COLUMN, FEATURES_COLUMN) if column in dataset.column_names), None
    )


# ---------------------------------------------------------------------------------------------------------------
# Model


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


# ---------------------------------------------------------------------------------------------------------------
# Generation-based evaluation


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
        keep, _ = decodable_clips(audios, [str(index) for index in range(len(audios))])
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
        print(
            f"step {state.global_step}, validation clip 0\n  reference:  {self.references[0]}\n  prediction: {predictions[0]}"
        )


# ---------------------------------------------------------------------------------------------------------------
# The recipe


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
    train_rows, eval_rows = load_training_splits(script_args, mixture, training_args.seed)
    num_proc = training_args.dataset_num_proc
    train_dataset = prepare_sft_dataset(train_rows, sft_args, processor, sft_args.max_train_samples, num_proc)
    eval_dataset = None
    if eval_rows is not None and training_args.eval_strategy != "no":
        eval_dataset = prepare_sft_dataset(eval_rows, sft_args, processor, sft_args.max_eval_samples, num_proc)
    train_dataset, eval_dataset = add_fast_path_columns(
        train_dataset, eval_dataset, model, processor, training_args, model_args, sft_args
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
    generation-based evaluation; RAFT trains through this too, on a model that already carries its adapter."""
    # The collator builds every tensor from raw rows; TRL must leave the rows alone.
    training_args.dataset_kwargs = {**(training_args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    training_args.remove_unused_columns = False
    training_args.max_length = None
    trainer = SFTTrainer(
        model=model,
        args=training_args,
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
    trainable, total = _count_parameters(trainer.model)
    trainer.accelerator.print(f"Trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)")
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
    trainer, generation_eval = build_sft_trainer(script_args, training_args, model_args, mixture, sft_args)
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint is None and sft_args.auto_resume:
        checkpoint = last_complete_checkpoint(training_args.output_dir)
    if checkpoint is not None:
        trainer.accelerator.print(f"Resuming from {checkpoint}")
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_metrics("train", train_result.metrics)

    evaluated_at = [entry["step"] for entry in trainer.state.log_history if "eval_loss" in entry]
    eval_metrics = {}
    if trainer.eval_dataset is not None and evaluated_at[-1:] != [trainer.state.global_step]:
        eval_metrics = trainer.evaluate()  # the final weights, unless the last step was just evaluated
    trainer.model.config.use_cache = True
    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        write_tokenizer_config(training_args.output_dir)
        bench_scores = generation_eval.latest_scores if generation_eval else {}
        settings = key_settings(script_args, training_args, model_args, sft_args)
        recipe = recipe or yaml.safe_dump(settings, sort_keys=False)
        (Path(training_args.output_dir) / "recipe.yaml").write_text(recipe)
        write_model_card(
            training_args.output_dir,
            settings=settings,
            recipe=recipe,
            bench_scores=bench_scores,
            bench_samples=len(generation_eval.audios) if generation_eval else 0,
            bench_protocol=sft_args.bench_protocol,
            results={**train_result.metrics, **_last_evaluation(trainer), **eval_metrics},
            is_adapter=model_args.use_peft,
        )
        if training_args.push_to_hub:
            push_folder_to_hub(training_args)
        print_summary(trainer, train_result.metrics, bench_scores, model_args.use_peft)
    if hasattr(trainer, "end"):  # transformers >= 5.18: finish the trackers, destroy the process group
        trainer.end()
    return trainer


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
            print(f"Skipping {folder}: the run stopped while saving it")
            continue
        return str(folder)
    return None


def _count_parameters(model) -> tuple[int, int]:
    parameters = list(model.parameters())
    return sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters)


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


def key_settings(
    script_args: ScriptArguments,
    training_args: SFTConfig,
    model_args: ModelConfig,
    sft_args: VoxtralSFTArguments,
) -> dict[str, Any]:
    """The resolved settings a reader of the model card needs, whatever the recipe left at its defaults."""
    scheduler = getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)
    if model_args.use_peft:
        method = describe_lora(model_args, sft_args.lora_on_audio_encoder)
    else:
        method = "full fine-tuning" + (", audio encoder frozen" if sft_args.freeze_audio_encoder else "")
    return {
        "base model": model_args.model_name_or_path,
        "dataset": script_args.dataset_name or "mixture",
        "method": method,
        "learning rate": f"{training_args.learning_rate:g}, {scheduler}, warmup {training_args.warmup_steps} steps",
        "batch": f"{training_args.per_device_train_batch_size} per device x "
        f"{training_args.gradient_accumulation_steps} accumulation x {training_args.world_size} devices",
        "length": f"{training_args.max_steps} steps"
        if training_args.max_steps > 0
        else f"{training_args.num_train_epochs:g} epochs",
        "NEFTune alpha": training_args.neftune_noise_alpha,
        "precision": "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "fp32",
    }


def write_model_card(
    output_dir: str | os.PathLike,
    *,
    settings: dict[str, Any],
    recipe: str,
    bench_scores: dict[str, float],
    bench_samples: int,
    bench_protocol: str,
    results: dict[str, float],
    is_adapter: bool,
    stage: str = "SFT",
    extra_sections: str = "",
) -> Path:
    """README.md in Hugging Face model card format: usage, the Evoxtral-Bench table, settings and the recipe.

    `stage` names the recipe that trained the model; `extra_sections` (markdown) go before the training settings.
    """
    from huggingface_hub import ModelCard, ModelCardData

    base_model, dataset = settings["base model"], settings["dataset"]
    metadata = ModelCardData(
        base_model=base_model if _is_hub_id(base_model) else None,
        library_name="peft" if is_adapter else "transformers",
        datasets=[dataset] if _is_hub_id(dataset) else None,
        pipeline_tag="automatic-speech-recognition",
        tags=["evoxtral", "voxtral", "audio-tags", "expressive-transcription", "trl", stage.lower()]
        + (["lora"] if is_adapter else []),
    )
    name = Path(output_dir).resolve().name
    if bench_scores:
        bench = (
            f"Greedy transcriptions of {bench_samples} validation clips scored by the Evoxtral-Bench core "
            f"(protocol `{bench_protocol}`) at the end of training:\n\n"
            + _table({key: value for key, value in bench_scores.items() if not key.startswith("num_")})
        )
    else:
        bench = "Not measured during training (no validation split, or `generation_eval_samples: 0`)."
    extra = f"\n{extra_sections.strip()}\n" if extra_sections else ""
    content = f"""---
{metadata.to_yaml()}
---

# {name}

Expressive tagged transcription: {"a LoRA adapter on" if is_adapter else "a fine-tune of"} `{base_model}` that
writes transcripts with inline ElevenLabs v3 audio tags and CAPITALISED emphasis, e.g.
`[nervous] So... [stammers] I was thinking maybe we could... [clears throat] try that new restaurant downtown?`
Trained with the Evoxtral {stage} recipe (TRL `SFTTrainer`).

## Use

```python
from evoxtral.model.inference import transcribe
from evoxtral.model.loading import load_model_and_processor

model, processor = load_model_and_processor("{name}", device="auto")
print(transcribe(model, processor, ["clip.wav"]))
```

## Evoxtral-Bench

{bench}
{extra}
## Training

{_table(settings)}

Results:

{_table({key: value for key, value in results.items() if _finite(value)})}

## Recipe

```yaml
{recipe.strip()}
```
"""
    path = Path(output_dir) / "README.md"
    ModelCard(content).save(path)
    return path


def _last_evaluation(trainer: SFTTrainer) -> dict[str, float]:
    evaluations = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    return evaluations[-1] if evaluations else {}


def _is_hub_id(name: str | None) -> bool:
    return bool(name) and name.count("/") == 1 and not os.path.exists(name)


def _table(values: dict[str, Any]) -> str:
    cells = (f"{value:.4g}" if isinstance(value, float) else str(value) for value in values.values())
    return "| | |\n| --- | --- |\n" + "\n".join(f"| {key} | {cell} |" for key, cell in zip(values, cells))


def push_folder_to_hub(training_args: SFTConfig, stage: str = "SFT") -> str:
    """Upload the final folder (adapter or model, processor, card, recipe), without the intermediate checkpoints.

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
    print(f"Pushed {training_args.output_dir} to https://huggingface.co/{repo_id}")
    return repo_id


def print_summary(trainer: SFTTrainer, train_metrics: dict, bench_scores: dict, is_adapter: bool) -> None:
    output_dir = trainer.args.output_dir
    lines = [
        f"SFT done: {trainer.state.global_step} steps, {train_metrics.get('epoch', 0):.2f} epochs, "
        f"train loss {train_metrics.get('train_loss', float('nan')):.4f}",
    ]
    evaluations = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    if evaluations:
        lines.append(f"eval loss {evaluations[0]['eval_loss']:.4f} -> {evaluations[-1]['eval_loss']:.4f}")
    if bench_scores:
        shown = {key: value for key, value in bench_scores.items() if not key.startswith("num_")}
        lines.append("Evoxtral-Bench: " + ", ".join(f"{key} {value:.3g}" for key, value in shown.items()))
    lines.append(f"{'adapter' if is_adapter else 'model'} + processor + README.md + recipe.yaml in {output_dir}")
    if is_adapter:
        lines.append(
            f"merge for serving: python -m evoxtral.model.merge {output_dir} --output-dir {output_dir}-merged"
        )
    print("\n".join(lines))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
