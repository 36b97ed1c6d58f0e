"""SFT throughput: the recipe's own training step against the original's settings, in the same run.

Every row builds its trainer with `evoxtral.training.sft.build_sft_trainer` from the recipe YAML plus command-line
overrides, exactly as `recipes/sft.py` does (Voxtral collator, TRL's SFTTrainer with its fused LM head, LoRA,
NEFTune), on a random-init Voxtral at Voxtral-Mini-3B's shapes (a config-only model folder, `random_init: true`:
nothing is downloaded) and a synthetic tagged-speech dataset written with `save_to_disk`.

Rows (each is the recipe YAML plus overrides):
  baseline   the original's settings: batch 2 x 8 accumulation, LoRA also on the encoder's q/k/v (its suffix
             match), activation checkpointing on, log-mel features and the encoder run at every step;
  fast       the recipe's batch size with the fast paths: encoder-state cache, no activation checkpointing,
             group_by_length (recipes/voxtral-mini-3b/sft/config_lora.yaml, the default at real shapes, sets all of them);
  variant    the fast row without the encoder-state cache, or at another batch size (--batch_sizes).
TRL's fused LM head (loss only at target positions) and bf16 + SDPA (from the recipe YAML) are on in every row.

samples/s is measured between the end of the warm-up steps and the end of the last step (data loading, forward,
backward, optimizer). Setup (model init, data preparation, the encoder-state cache) is reported apart.

    python bench/sft_throughput.py                         # real shapes, one GPU
    python bench/sft_throughput.py --batch_sizes 24 32     # also the recipe at these batch sizes
    python bench/sft_throughput.py --tiny                  # evoxtral-tiny on CPU: a smoke check, not a figure
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoConfig, TrainerCallback

from evoxtral.configs import make_sft_parser
from evoxtral.data.audio import num_chunks
from evoxtral.model.collator import VoxtralTranscriptionCollator
from evoxtral.model.loading import resolve_model_source
from evoxtral.model.processor import TEKKEN_FILE, build_voxtral_processor, load_processor, save_processor
from evoxtral.model.tiny import TINY_MODEL_NAME, write_voxtral_tekken
from evoxtral.throughput import (
    BenchRow,
    PeakMemory,
    add_bench_arguments,
    fill_shape_defaults,
    full_size_voxtral_config,
    noise_clips,
    peak_flops,
    save_speech_dataset,
    tagged_transcripts,
    training_flops_per_sample,
    write_report,
)
from evoxtral.training.sft import build_sft_trainer

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = {
    # The measurement: one 30 s chunk (375 audio tokens), 8 prompt tokens, ~100 target tokens.
    "real": dict(recipe=REPO / "recipes/voxtral-mini-3b/sft/config_lora.yaml", clip_seconds=20.0, mean_words=60,
                 warmup_steps=3, measure_steps=10),
    "tiny": dict(recipe=REPO / "recipes/tiny/sft.yaml", clip_seconds=2.0, mean_words=10,
                 warmup_steps=1, measure_steps=2),
}  # fmt: skip
# The original recipe's settings, as overrides of the recipe YAML.
ORIGINAL_SETTINGS = {
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 8,
    "activation_checkpointing": True,
    "lora_on_audio_encoder": True,
    "audio_encoder_cache": False,
    "precompute_features": False,
    "train_sampling_strategy": "random",
}
# The fast paths, as overrides too: the Voxtral recipe YAML sets them already, the tiny one does not.
FAST_SETTINGS = {
    "activation_checkpointing": False,
    "lora_on_audio_encoder": False,
    "audio_encoder_cache": True,
    "train_sampling_strategy": "group_by_length",
}
# What every row overrides: no evaluation, checkpoints or logging inside the measured steps.
BENCH_SETTINGS = {
    "eval_strategy": "no",
    "save_strategy": "no",
    "logging_strategy": "no",
    "report_to": "none",
    "load_best_model_at_end": False,
    "push_to_hub": False,
    "generation_eval_samples": 0,
    "auto_resume": False,
    "warmup_steps": 0,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_arguments(parser, "sft_throughput")
    parser.add_argument("--recipe", type=Path, help="recipe YAML of the fast rows (real: config_lora.yaml)")
    parser.add_argument("--clip_seconds", type=float, help="length of every clip (real: 20 s = one 30 s chunk)")
    parser.add_argument("--mean_words", type=int, help="mean transcript length in words (real: 60, ~100 tokens)")
    parser.add_argument("--warmup_steps", type=int, help="optimizer steps before the clock starts (real: 3)")
    parser.add_argument("--measure_steps", type=int, help="optimizer steps timed (real: 10)")
    parser.add_argument("--batch_sizes", type=int, nargs="*", default=[], help="extra rows: the recipe at these sizes")
    parser.add_argument("--skip_baseline", action="store_true", help="recipe rows only (the baseline is slow)")
    args = parser.parse_args(argv)
    args.tiny = args.tiny or not torch.cuda.is_available()
    fill_shape_defaults(args, DEFAULTS)
    if args.warmup_steps < 1 or args.measure_steps < 1:
        parser.error("--warmup_steps and --measure_steps must be at least 1")
    return args


def write_model_folder(folder: Path) -> Path:
    """Voxtral-Mini-3B's config and the full-vocabulary offline processor; `random_init: true` needs no weights."""
    folder.mkdir(parents=True, exist_ok=True)
    config = full_size_voxtral_config()
    config.save_pretrained(folder)
    save_processor(
        build_voxtral_processor(write_voxtral_tekken(folder / TEKKEN_FILE, config.text_config.vocab_size)), folder
    )
    return folder


def as_flags(settings: dict) -> list[str]:
    return [item for name, value in settings.items() for item in (f"--{name}", str(value))]


class StepClock(TrainerCallback):
    """Time and peak memory from the end of optimizer step `warmup_steps` to the end of step `last_step`."""

    def __init__(self, warmup_steps: int, last_step: int, device: torch.device):
        self.warmup_steps, self.last_step = warmup_steps, last_step
        self.memory = PeakMemory(device)
        self.seconds = self.peak_memory_gib = None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup_steps:
            self.memory.start()
            self._start = time.perf_counter()
        elif state.global_step == self.last_step:
            self.peak_memory_gib = self.memory.stop()
            self.seconds = time.perf_counter() - self._start


def measure_recipe(
    row: BenchRow, flags: list[str], *, warmup_steps: int, measure_steps: int, flops_per_sample: float, peak_tflops
) -> torch.device:
    """Build the recipe's trainer from `flags` as recipes/sft.py does, train, fill `row`; returns the device."""
    script_args, training_args, model_args, mixture, sft_args = make_sft_parser().parse_args_and_config(flags)
    samples_per_step = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    row.settings.update(
        samples_per_step=samples_per_step,
        activation_checkpointing=training_args.activation_checkpointing,
        audio_encoder_cache=sft_args.audio_encoder_cache,
        lora_on_audio_encoder=sft_args.lora_on_audio_encoder,
        train_sampling_strategy=training_args.train_sampling_strategy,
        bf16=training_args.bf16,
        attn_implementation=model_args.attn_implementation,
    )
    device = training_args.device
    clock = StepClock(warmup_steps, warmup_steps + measure_steps, device)
    setup = time.perf_counter()
    trainer = None
    try:
        trainer, _ = build_sft_trainer(script_args, training_args, model_args, mixture, sft_args)
        row.settings["setup_seconds"] = round(time.perf_counter() - setup, 2)
        trainer.add_callback(clock)
        trainer.train()
    except RuntimeError as error:  # torch.OutOfMemoryError is one
        if "out of memory" not in str(error).lower():
            raise
        row.error = "out of memory"
        return device
    finally:
        if trainer is not None:  # the next row needs the memory: drop the accelerator's references too
            trainer.accelerator.free_memory()
        trainer = None
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    row.seconds, row.peak_memory_gib = clock.seconds, clock.peak_memory_gib
    row.throughput = measure_steps * samples_per_step / clock.seconds
    device_peak = peak_flops(device, torch.bfloat16 if training_args.bf16 else torch.float32, peak_tflops)
    if device_peak:
        row.mfu_percent = 100 * row.throughput * flops_per_sample / device_peak
    return device


def main(argv=None) -> Path:
    args = parse_args(argv)
    recipe_flags = ["--config", str(args.recipe)]
    recipe = make_sft_parser().parse_args_and_config(recipe_flags)[1]
    recipe_batch = recipe.per_device_train_batch_size * recipe.gradient_accumulation_steps
    configurations = []
    if not args.skip_baseline:
        configurations.append(
            ("original settings: batch 2 x 8, encoder LoRA, checkpointing", "baseline", ORIGINAL_SETTINGS)
        )
    configurations.append((f"recipe ({args.recipe.name}) + fast paths, batch {recipe_batch}", "fast", FAST_SETTINGS))
    configurations.append(
        ("the same without the encoder-state cache", "variant", {**FAST_SETTINGS, "audio_encoder_cache": False})
    )
    for batch_size in args.batch_sizes:
        configurations.append(
            (
                f"recipe + fast paths at batch {batch_size}",
                "variant",
                {**FAST_SETTINGS, "per_device_train_batch_size": batch_size, "gradient_accumulation_steps": 1},
            )
        )
    samples_per_step = [recipe_batch, *args.batch_sizes] + ([] if args.skip_baseline else [16])
    num_rows = max(samples_per_step) * (args.warmup_steps + args.measure_steps)

    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        texts = tagged_transcripts(num_rows, args.mean_words)
        clips = noise_clips(num_rows, args.clip_seconds)
        dataset = save_speech_dataset(workdir / "dataset", clips, texts)
        model = TINY_MODEL_NAME if args.tiny else write_model_folder(workdir / "model")
        collator = VoxtralTranscriptionCollator(load_processor(resolve_model_source(str(model))))
        prompt_length = len(collator.prompt_ids(num_chunks(len(clips[0]))))
        mean_length = prompt_length + statistics.mean(len(collator.target_ids(text)) for text in texts)
        config = AutoConfig.from_pretrained(resolve_model_source(str(model)))
        common = {
            "model_name_or_path": model,
            "random_init": not args.tiny,
            "dataset_name": dataset,
            "output_dir": workdir / "run",
            "max_steps": args.warmup_steps + args.measure_steps,
            "max_train_samples": num_rows,
            **BENCH_SETTINGS,
        }
        rows = []
        for name, role, overrides in configurations:
            row = BenchRow(name=name, role=role, throughput_unit="samples/s")
            device = measure_recipe(
                row,
                recipe_flags + as_flags({**common, **overrides}),
                warmup_steps=args.warmup_steps,
                measure_steps=args.measure_steps,
                flops_per_sample=training_flops_per_sample(config, mean_length),
                peak_tflops=args.peak_tflops,
            )
            rows.append(row)

    device_peak = peak_flops(device, torch.bfloat16 if recipe.bf16 else torch.float32, args.peak_tflops)
    settings = {
        "shapes": "tiny (evoxtral-tiny)" if args.tiny else "real (Voxtral-Mini-3B, random weights)",
        "recipe": str(args.recipe.relative_to(REPO) if args.recipe.is_relative_to(REPO) else args.recipe),
        "clip_seconds": args.clip_seconds,
        "prompt_tokens": prompt_length,
        "mean_sequence_tokens": round(mean_length, 1),
        "warmup_steps": args.warmup_steps,
        "measure_steps": args.measure_steps,
        "model_flops_per_sample": training_flops_per_sample(config, mean_length),
        "peak_tflops": device_peak / 1e12 if device_peak else None,
    }
    return write_report(args.output, "sft_throughput", settings, rows, device)


if __name__ == "__main__":
    main()
