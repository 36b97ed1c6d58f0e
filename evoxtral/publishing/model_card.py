"""Model cards (README.md in the Hugging Face format) for what the recipes train: the transcription model of SFT
and RAFT, with its Evoxtral-Bench table, and the facial-emotion classifier of FER, with its test-split scores."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData
from transformers import TrainingArguments
from trl import ModelConfig, ScriptArguments

from evoxtral.configs import RaftArguments, VoxtralSFTArguments
from evoxtral.model.lora import describe_lora
from evoxtral.scoring.rewards import REWARD_QUANTILES, get_reward_funcs
from evoxtral.utils.formatting import is_finite_number, key_value_table

TRANSCRIPTION_TAGS = ["evoxtral", "voxtral", "audio-tags", "expressive-transcription", "trl"]


def is_hub_id(name: str | None) -> bool:
    """Whether a model or dataset name is a Hub repository (owner/name) rather than a local folder."""
    return bool(name) and name.count("/") == 1 and not os.path.exists(name)


def save_model_card(
    output_dir: str | os.PathLike, metadata: ModelCardData, intro: str, sections: Sequence[tuple[str, str]]
) -> Path:
    """README.md in ``output_dir``: the metadata block, the folder's name as title, ``intro``, then each
    (heading, markdown) section."""
    body = "\n\n".join(f"## {heading}\n\n{text.strip()}" for heading, text in sections if text)
    content = f"---\n{metadata.to_yaml()}\n---\n\n# {Path(output_dir).resolve().name}\n\n{intro.strip()}\n\n{body}\n"
    path = Path(output_dir) / "README.md"
    ModelCard(content).save(path)
    return path


def describe_mixture(mixture) -> str:
    """A weighted ``dataset_mixture`` in one line ("mixture: a (weight 0.5), b"), or "mixture" for TRL's list."""
    if mixture is None:
        return "mixture"
    parts = [
        entry.id + (f" (weight {entry.weight:g})" if entry.weight is not None else "") for entry in mixture.datasets
    ]
    return "mixture: " + ", ".join(parts)


def key_settings(
    script_args: ScriptArguments,
    training_args: TrainingArguments,
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
        "dataset": script_args.dataset_name or describe_mixture(sft_args.dataset_mixture),
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
    extra_sections: Sequence[tuple[str, str]] = (),
) -> Path:
    """The transcription model's card: usage, the Evoxtral-Bench table, settings and the recipe.

    `stage` names the recipe that trained the model; `extra_sections` ((heading, markdown) pairs, e.g. RAFT's
    rounds) go before the training settings.
    """
    base_model, dataset = settings["base model"], settings["dataset"]
    metadata = ModelCardData(
        base_model=base_model if is_hub_id(base_model) else None,
        library_name="peft" if is_adapter else "transformers",
        datasets=[dataset] if is_hub_id(dataset) else None,
        pipeline_tag="automatic-speech-recognition",
        tags=TRANSCRIPTION_TAGS + [stage.lower()] + (["lora"] if is_adapter else []),
    )
    intro = (
        f"Expressive tagged transcription: {'a LoRA adapter on' if is_adapter else 'a fine-tune of'} `{base_model}` "
        "that\nwrites transcripts with inline ElevenLabs v3 audio tags and CAPITALISED emphasis, e.g.\n"
        "`[nervous] So... [stammers] I was thinking maybe we could... [clears throat] try that new restaurant "
        f"downtown?`\nTrained with the Evoxtral {stage} recipe (TRL `SFTTrainer`)."
    )
    usage = f"""```python
from evoxtral.model.inference import transcribe
from evoxtral.model.loading import load_model_and_processor

model, processor = load_model_and_processor("{Path(output_dir).resolve().name}", device="auto")
print(transcribe(model, processor, ["clip.wav"]))
```"""
    if bench_scores:
        bench = (
            f"Greedy transcriptions of {bench_samples} validation clips scored by the Evoxtral-Bench core "
            f"(protocol `{bench_protocol}`) at the end of training:\n\n"
            + key_value_table({key: value for key, value in bench_scores.items() if not key.startswith("num_")})
        )
    else:
        bench = "Not measured during training (no validation split, or `generation_eval_samples: 0`)."
    finite = {key: value for key, value in results.items() if is_finite_number(value)}
    training = f"{key_value_table(settings)}\n\nResults:\n\n{key_value_table(finite)}"
    sections = [("Use", usage), ("Evoxtral-Bench", bench), *extra_sections]
    sections += [("Training", training), ("Recipe", f"```yaml\n{recipe.strip()}\n```")]
    return save_model_card(output_dir, metadata, intro, sections)


def raft_card_section(summaries: list[dict], args: RaftArguments, training_args: TrainingArguments) -> tuple[str, str]:
    """The RAFT model card's own section (heading, markdown): the reward, the selection, and per round the reward
    distribution."""
    weights = " + ".join(f"{weight:g} * {name}" for name, weight in zip(args.reward_funcs, args.reward_weights))
    definitions = [
        f"- `{name}`: {func.__doc__.strip().splitlines()[0]}"
        for name, func in zip(args.reward_funcs, get_reward_funcs(args.reward_funcs))
    ]
    fallback = (
        f" A clip whose best sample scores below its reference's own reward (the reference scored against itself) "
        f"minus {args.reference_fallback_margin:g} trains on the reference."
        if args.reference_fallback
        else ""
    )
    lines = [
        f"Per training clip, {args.samples_per_input} samples (temperature {args.temperature}, top_p {args.top_p}, "
        f"at most {args.max_new_tokens} new tokens), scored with reward = {weights} (protocol "
        f"`{args.reward_protocol}`):",
        "",
        *definitions,
        "",
        f"The best sample of each clip is its training target; clips whose best reward is not above the threshold "
        f"(the sorted best rewards at the bottom {args.drop_fraction:.0%}) are dropped, ties included.{fallback} "
        f"Each round trains {training_args.num_train_epochs:g} epoch(s) at learning rate "
        f"{training_args.learning_rate:g} from the previous round's weights.",
        "",
        "| Round | Clips | Kept | On reference | Best reward mean | p10 | p25 | p50 | p75 | p90 | Threshold |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for summary in summaries:
        quantiles = " | ".join(f"{summary[f'best_reward_p{round(100 * q)}']:.3f}" for q in REWARD_QUANTILES)
        lines.append(
            f"| {summary['round']} | {summary['inputs']} | {summary['kept']} | {summary['reference_fallbacks']} | "
            f"{summary['best_reward_mean']:.3f} | {quantiles} | {summary['threshold']:.3f} |"
        )
    return "RAFT", "\n".join(lines)


def write_fer_model_card(
    output_dir: str | os.PathLike,
    *,
    base_model: str | None,
    dataset: str,
    report: dict[str, Any],
    training_args: TrainingArguments,
) -> Path:
    """The facial-emotion classifier's card: what it predicts, how to export and serve it, its test-split scores
    and confusion matrix, and how it was trained."""
    metadata = ModelCardData(
        base_model=base_model if is_hub_id(base_model) else None,
        library_name="transformers",
        datasets=[dataset] if is_hub_id(dataset) else None,
        pipeline_tag="image-classification",
        tags=["evoxtral", "facial-expression-recognition", "mobilevit"],
    )
    intro = (
        f"Facial emotion recognition: MobileViT-XXS "
        f"{f'fine-tuned from `{base_model}`' if base_model else 'trained from random init'} on "
        f"`{dataset}`, predicting {', '.join(report['labels'])}. Trained with the Evoxtral FER recipe "
        "(transformers `Trainer`)."
    )
    usage = (
        "Export to ONNX and serve it at `POST /fer` next to the transcription API:\n\n```bash\n"
        f"python recipes/fer_onnx.py --checkpoint_dir {Path(output_dir).resolve().name} --onnx_dir fer-onnx\n"
        "EVOXTRAL_FER_MODEL=fer-onnx python -m serve\n```"
    )
    scores = {key: value for key, value in report.items() if key.startswith("test_") or key == "train_loss"}
    results = f"{key_value_table(scores)}\n\n![Confusion matrix](confusion_matrix.png)"
    settings = {
        "learning rate": f"{training_args.learning_rate:g}",
        "batch": f"{training_args.per_device_train_batch_size} per device",
        "length": f"{training_args.max_steps} steps"
        if training_args.max_steps > 0
        else f"{training_args.num_train_epochs:g} epochs",
        "seed": training_args.seed,
    }
    sections = [("Use", usage), ("Test split", results), ("Training", key_value_table(settings))]
    return save_model_card(output_dir, metadata, intro, sections)
