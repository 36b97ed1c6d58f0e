"""RAFT's rounds: sample and score (sample_store.py), select (selection.py), train, then release the last round.

One round samples k transcripts per clip of the training split from the current model, keeps the best per clip by
the recipe's reward, and trains the SFT recipe's trainer (evoxtral.training.sft.make_sft_trainer) on the kept
(audio, target) pairs into ``round_<r>/``, continuing the previous stage: the SFT adapter for round 1, round r-1's
weights after that. Without an adapter a whole model trains in full, as SFT does without LoRA. The last round's
model is copied to the top of ``output_dir`` with the SFT recipe's model card plus a section on every round's
reward distribution, threshold and kept count.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from accelerate import PartialState
from peft import PeftModel
from transformers import set_seed
from trl import ModelConfig, SFTConfig, SFTTrainer

from evoxtral.configs import RaftArguments, VoxtralSFTArguments
from evoxtral.data.splits import clip_ids, decodable_clips, load_training_rows
from evoxtral.model.lora import voxtral_lora_config
from evoxtral.model.processor import load_processor
from evoxtral.publishing.hub import push_folder_to_hub
from evoxtral.publishing.model_card import key_settings, raft_card_section, write_model_card
from evoxtral.publishing.recipe import write_recipe
from evoxtral.publishing.summaries import format_selection_summary, log_raft_summary
from evoxtral.training.lifecycle import end_trainer, save_final_model
from evoxtral.training.raft.sample_store import SCORED_DIR, sample_and_score
from evoxtral.training.raft.selection import (
    SAMPLES_DATASET_DIR,
    RoundSelection,
    save_samples_dataset,
    select_training_targets,
    training_split,
)
from evoxtral.training.sft import load_sft_model, make_sft_trainer, prepare_sft_dataset
from evoxtral.utils.checkpoints import checkpoint_to_resume
from evoxtral.utils.logging import get_logger, setup_logging

logger = get_logger(__name__)

ROUND_FILE = "raft_round.json"
SUMMARY_FILE = "raft_summary.json"


@dataclass
class RaftRun:
    """Everything a round needs besides its number and starting point."""

    raft_args: RaftArguments
    training_args: SFTConfig
    model_args: ModelConfig
    sft_args: VoxtralSFTArguments
    train_rows: datasets.Dataset  # audio undecoded
    eval_rows: datasets.Dataset | None
    state: PartialState


def round_dir(output_dir: str | Path, round_number: int) -> Path:
    return Path(output_dir) / f"round_{round_number}"


def sampling_settings(args: RaftArguments, model: str, adapter: str | None, language: str | None) -> dict[str, Any]:
    """What the samples of a round depend on, recorded with them so that a resume under other settings is refused."""
    return {
        "model": model,
        "adapter": adapter,
        "language": language,
        "dataset": args.dataset_name,
        "split": args.dataset_train_split,
        "samples_per_input": args.samples_per_input,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "max_new_tokens": args.max_new_tokens,
        "reward_funcs": list(args.reward_funcs),
        "reward_weights": list(args.reward_weights),
        "reward_protocol": args.reward_protocol,
        # recorded only when it is not the default, so runs recorded before the vLLM sampler existed still resume
        **({"sampler": args.sampler} if args.sampler != "transformers" else {}),
    }


def sample_and_select(
    run: RaftRun, round_number: int, model, processor, model_source: str, adapter: str | None
) -> tuple[RoundSelection, list[int]]:
    """Score k samples of every decodable training clip (resuming the round's shards) and select the targets;
    returns the selection and each selected row's position in the training split."""
    args, sft_args, state = run.raft_args, run.sft_args, run.state
    data = run.train_rows
    ids, audios, references = clip_ids(data, args.id_column), data[sft_args.audio_column], data[sft_args.text_column]
    positions, _ = decodable_clips(audios, ids)
    vllm_export = None
    if args.sampler == "vllm" and state.is_main_process:
        vllm_export = export_round_for_vllm(run, round_number, model_source, adapter)
        processor = processor or load_processor(vllm_export.model_dir)
    rows = sample_and_score(
        model,
        processor,
        [audios[i] for i in positions],
        [references[i] for i in positions],
        [ids[i] for i in positions],
        round_dir(run.training_args.output_dir, round_number) / SCORED_DIR,
        args,
        settings=sampling_settings(args, model_source, adapter, sft_args.language),
        seed=run.training_args.seed + 1_000_003 * round_number,
        language=sft_args.language,
        process_index=state.process_index,
        num_processes=state.num_processes,
        wait_for_everyone=state.wait_for_everyone,
        vllm_export=vllm_export,
    )
    selection = select_training_targets(
        rows,
        args.drop_fraction,
        reference_fallback=args.reference_fallback,
        reference_fallback_margin=args.reference_fallback_margin,
    )
    return selection, positions


def export_round_for_vllm(run: RaftRun, round_number: int, model_source: str, adapter: str | None):
    """The round's starting model in vLLM's format (``round_<r>/vllm_export``; its language-model LoRA served as a
    LoRA request, the rest merged), what `sampler: vllm` samples from. The tests check such exports against
    transformers; here the check is skipped, as it would start vLLM a second time."""
    from evoxtral.model.vllm_export import export_for_vllm

    folder = round_dir(run.training_args.output_dir, round_number) / "vllm_export"
    return export_for_vllm(
        model_source, folder, adapter=adapter, dtype=run.model_args.dtype or "auto", check=lambda *_: None
    )


def train_round(
    run: RaftRun, round_number: int, model, processor, selection: RoundSelection, positions: list[int]
) -> tuple[SFTTrainer, Any]:
    """The SFT recipe's trainer on the selected targets, into ``round_<r>/`` (resuming its checkpoints); returns
    the trainer and its generation-based evaluation (None when off)."""
    sft_args, folder = run.sft_args, round_dir(run.training_args.output_dir, round_number)
    round_args = dataclasses.replace(
        run.training_args,
        output_dir=str(folder),
        push_to_hub=False,
        run_name=f"{run.training_args.run_name}-round{round_number}" if run.training_args.run_name else None,
    )
    num_proc = round_args.dataset_num_proc
    targets = training_split(run.train_rows, selection, positions, sft_args.text_column)
    train_dataset = prepare_sft_dataset(targets, sft_args, processor, None, num_proc)
    eval_dataset = None
    if run.eval_rows is not None:
        eval_dataset = prepare_sft_dataset(run.eval_rows, sft_args, processor, None, num_proc)
    peft_config = None if isinstance(model, PeftModel) else voxtral_lora_config(run.model_args, sft_args)
    trainer, generation_eval = make_sft_trainer(
        model, processor, round_args, sft_args, train_dataset, eval_dataset, peft_config=peft_config
    )
    return trainer, generation_eval


def run_round(run: RaftRun, round_number: int, model_source: str, adapter: str | None):
    """Sample, select and train one round into ``round_<r>/``; returns (summary, trainer)."""
    folder, state = round_dir(run.training_args.output_dir, round_number), run.state
    # vLLM samples before the model to train is loaded, so that the two never hold the GPU's memory together.
    sample_first = run.raft_args.sampler == "vllm"
    if sample_first:
        selection, positions = sample_and_select(run, round_number, None, None, model_source, adapter)
    model, processor = load_sft_model(
        run.model_args, run.sft_args, model_name_or_path=model_source, adapter=adapter, device=state.device
    )
    if not sample_first:
        selection, positions = sample_and_select(run, round_number, model, processor, model_source, adapter)
    summary = {"round": round_number, "started_from": adapter or model_source, **selection.summary()}
    logger.info("Round %d: %s", round_number, format_selection_summary(summary))
    if state.is_main_process:
        save_samples_dataset(selection, folder / SAMPLES_DATASET_DIR)
    if not selection.training_rows:
        raise ValueError(
            f"round {round_number}: no clip scored above the threshold {selection.threshold}, nothing to train on; "
            "lower drop_fraction or set reference_fallback"
        )
    trainer, generation_eval = train_round(run, round_number, model, processor, selection, positions)
    train_result = trainer.train(resume_from_checkpoint=checkpoint_to_resume(folder, None, run.sft_args.auto_resume))
    save_final_model(trainer, folder)
    summary["train_metrics"] = train_result.metrics
    summary["bench"] = generation_eval.latest_scores if generation_eval else {}
    summary["bench_samples"] = len(generation_eval.audios) if generation_eval else 0
    if state.is_main_process:
        (folder / ROUND_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    state.wait_for_everyone()
    return summary, trainer


def run_raft(
    raft_args: RaftArguments,
    training_args: SFTConfig,
    model_args: ModelConfig,
    sft_args: VoxtralSFTArguments,
    recipe: str | None = None,
) -> list[dict]:
    """All rounds (a finished round is skipped on a rerun), then the last round's model and its card at the top of
    output_dir, pushed when asked. Returns each round's summary."""
    setup_logging(training_args)
    if sft_args.random_init:
        raise ValueError("RAFT continues a trained model: random_init does not apply")
    state = PartialState()
    set_seed(training_args.seed)
    rows = load_training_rows(
        raft_args,
        seed=training_args.seed,
        audio_column=sft_args.audio_column,
        text_column=sft_args.text_column,
        max_train_samples=sft_args.max_train_samples,
        max_eval_samples=sft_args.max_eval_samples,
        with_eval=training_args.eval_strategy != "no",
        weighted=sft_args.dataset_mixture,
    )
    run = RaftRun(raft_args, training_args, model_args, sft_args, *rows, state)
    output_dir = Path(training_args.output_dir)
    summaries, trainer = [], None
    model_source, adapter = model_args.model_name_or_path, raft_args.adapter
    for round_number in range(1, raft_args.rounds + 1):
        done = round_dir(output_dir, round_number) / ROUND_FILE
        if done.exists():
            summary = json.loads(done.read_text())
            logger.info("Round %d already done: %s", round_number, format_selection_summary(summary))
        else:
            summary, trainer = run_round(run, round_number, model_source, adapter)
        summaries.append(summary)
        # the next round loads this round's folder: an adapter (its base named inside) or a whole model
        model_source, adapter = str(round_dir(output_dir, round_number)), None
    if state.is_main_process:
        release_last_round(Path(model_source), run, summaries, recipe)
        log_raft_summary(
            training_args.output_dir,
            dataset=raft_args.dataset_name,
            split=raft_args.dataset_train_split,
            summaries=summaries,
            scored_dir=SCORED_DIR,
            samples_dir=SAMPLES_DATASET_DIR,
        )
    end_trainer(trainer)
    return summaries


def release_last_round(last_round: Path, run: RaftRun, summaries: list[dict], recipe: str | None) -> None:
    """Copy the last round's model to the top of output_dir with a model card, the recipe and the summaries."""
    output_dir = Path(run.training_args.output_dir)
    for item in last_round.iterdir():
        if item.is_file() and item.name not in (ROUND_FILE, "README.md"):
            shutil.copy2(item, output_dir / item.name)
    (output_dir / SUMMARY_FILE).write_text(json.dumps(summaries, indent=2) + "\n")
    settings = {
        **key_settings(run.raft_args, run.training_args, run.model_args, run.sft_args),
        "method": f"RAFT, {len(summaries)} round(s), continuing "
        f"`{run.raft_args.adapter or run.model_args.model_name_or_path}`",
    }
    last = summaries[-1]
    write_model_card(
        output_dir,
        settings=settings,
        recipe=write_recipe(output_dir, recipe, settings),
        bench_scores=last.get("bench") or {},
        bench_samples=last.get("bench_samples", 0),
        bench_protocol=run.sft_args.bench_protocol,
        results=last.get("train_metrics") or {},
        is_adapter=(output_dir / "adapter_config.json").is_file(),
        stage="RAFT",
        extra_sections=[raft_card_section(summaries, run.raft_args, run.training_args)],
    )
    if run.training_args.push_to_hub:
        push_folder_to_hub(run.training_args, stage="RAFT")
