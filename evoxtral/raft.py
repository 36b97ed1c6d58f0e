"""RAFT (reward-ranked fine-tuning): sample k transcripts per training clip, keep the best, fine-tune on it.

``recipes/raft.py`` parses arguments and calls :func:`run_raft`. One round is

1. **sample**: k transcripts per clip of the training split (:func:`evoxtral.model.sampling.sample_transcripts`, batches
   across clips), each scored with the rewards named in the recipe (:mod:`evoxtral.scoring.rewards`). Every scored clip is
   appended to ``round_<r>/scored/samples-rank<n>.jsonl`` and flushed batch by batch, so a killed run resumes with
   the clips it has not scored yet (a torn last line is dropped);
2. **select**: the best of k per clip, then the original rule (:func:`evoxtral.scoring.rewards.select_best_of_k`): drop
   the clips whose best reward is at or below the value at the bottom ``drop_fraction``; optionally fall back to
   the reference transcript where the best sample scores below the reference's own reward. All k samples with
   their rewards and the decision are saved as a ``datasets`` folder, ``round_<r>/samples``, to inspect a run;
3. **train**: the SFT recipe's trainer (:func:`evoxtral.training.make_sft_trainer`) on the kept (audio, target)
   pairs, continuing the previous stage (the SFT adapter for round 1, round r-1's weights after that), into
   ``round_<r>/``. Without an adapter a whole model trains in full, as SFT does without LoRA.

The last round's adapter (or model) is also saved at the top of ``output_dir``, with the SFT recipe's model card
plus a section that reports the reward distribution, the threshold and the kept count of every round.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from peft import PeftModel
from transformers import set_seed
from trl import ModelConfig, SFTConfig

from evoxtral.configs import RaftArguments, VoxtralSFTArguments
from evoxtral.model.processor import write_tokenizer_config
from evoxtral.scoring.rewards import (
    DEFAULT_DROP_FRACTION,
    combined_reward,
    get_reward_funcs,
    reward_components,
    select_best_of_k,
)

logger = logging.getLogger(__name__)

SCORED_DIR = "scored"
SAMPLES_DATASET_DIR = "samples"
SETTINGS_FILE = "settings.json"
REWARD_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


# --- Scoring -------------------------------------------------------------------------------------------------------


def score_input(
    samples: Sequence[str], reference: str, args: RaftArguments
) -> tuple[list[float], dict[str, list[float]], float]:
    """The combined reward of each sample, each named reward of each sample, and the reference's own reward."""
    names, weights, protocol = args.reward_funcs, args.reward_weights, args.reward_protocol
    rewards = [combined_reward(sample, reference, names, weights, protocol=protocol) for sample in samples]
    per_sample = [reward_components(sample, reference, names, protocol=protocol) for sample in samples]
    components = {name: [values[name] for values in per_sample] for name in names}
    reference_reward = combined_reward(reference, reference, names, weights, protocol=protocol)
    return rewards, components, reference_reward


# --- Scored-sample shards, kill-safe -------------------------------------------------------------------------------


def read_scored_rows(scored_dir: Path) -> dict[str, dict]:
    """Rows already scored in ``scored_dir`` (every shard), by clip id; unreadable lines (a torn tail) are skipped."""
    rows: dict[str, dict] = {}
    for shard in sorted(scored_dir.glob("samples-*.jsonl")):
        with shard.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    logger.warning(
                        "%s line %d is incomplete (a killed run); that clip is sampled again", shard, number
                    )
                    continue
                rows.setdefault(row["id"], row)
    return rows


def drop_torn_tail(path: Path) -> None:
    """Cut a file back to its last complete line, so appended rows never join a line a kill left half written."""
    if not path.exists():
        return
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with path.open("r+b") as handle:
            handle.truncate(end)


def sample_and_score(
    model,
    processor,
    audios: Sequence[Any],
    references: Sequence[str],
    ids: Sequence[str],
    scored_dir: Path,
    args: RaftArguments,
    *,
    settings: dict[str, Any],
    seed: int,
    language: str | None = "en",
    process_index: int = 0,
    num_processes: int = 1,
    wait_for_everyone=lambda: None,
) -> list[dict]:
    """Sample and score every clip not yet in ``scored_dir``; returns all scored rows in input order.

    With several processes each scores its share of the clips left into its own shard; ``wait_for_everyone`` is
    the barrier that keeps a process from appending before all have read what is there. ``settings`` (model,
    sampling and reward options) are recorded with the shards, and a resume under other settings is refused. A
    batch's sampling seed is ``seed`` plus the input position of its first clip.
    """
    from tqdm.auto import tqdm

    from evoxtral.model.sampling import sample_transcripts

    done = read_scored_rows(scored_dir)
    _check_same_run(done, dict(zip(ids, references)), settings, scored_dir, is_main=process_index == 0)
    wait_for_everyone()
    pending = [index for index, clip_id in enumerate(ids) if clip_id not in done]
    mine = pending[process_index::num_processes]
    scored_dir.mkdir(parents=True, exist_ok=True)
    shard = scored_dir / f"samples-rank{process_index:03d}.jsonl"
    drop_torn_tail(shard)
    with (
        shard.open("a", encoding="utf-8") as out,
        tqdm(total=len(ids), initial=len(ids) - len(pending), desc="Sampling", unit="clip",
             disable=process_index != 0) as bar,
    ):  # fmt: skip
        for start in range(0, len(mine), args.sampling_batch_size):
            batch = mine[start : start + args.sampling_batch_size]
            samples_per_clip = sample_transcripts(
                model, processor, [audios[index] for index in batch], k=args.samples_per_input,
                temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                batch_size=args.sampling_batch_size, seed=seed + batch[0], language=language, progress=False,
            )  # fmt: skip
            for index, samples in zip(batch, samples_per_clip):
                rewards, components, reference_reward = score_input(samples, references[index], args)
                row = {
                    "id": ids[index],
                    "reference": references[index],
                    "samples": samples,
                    "rewards": rewards,
                    "components": components,
                    "reference_reward": reference_reward,
                }
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
            bar.update(len(batch) * num_processes)
    wait_for_everyone()
    rows = read_scored_rows(scored_dir)
    missing = [clip_id for clip_id in ids if clip_id not in rows]
    if missing:
        raise RuntimeError(f"{len(missing)} clips were not scored (e.g. {missing[:3]}); rerun to resume")
    return [rows[clip_id] for clip_id in ids]


def _check_same_run(
    done: dict[str, dict], references: dict[str, str], settings: dict[str, Any], scored_dir: Path, is_main: bool
) -> None:
    """Refuse to mix samples from another model, other sampling or reward settings, or other references."""
    settings_file = scored_dir / SETTINGS_FILE
    if settings_file.exists():
        recorded = json.loads(settings_file.read_text())
        changed = {key: (recorded.get(key), value) for key, value in settings.items() if recorded.get(key) != value}
        if changed:
            raise ValueError(
                f"{scored_dir} holds samples from other settings ({changed}, as (recorded, now)); "
                "use another output_dir or delete that folder"
            )
    elif is_main:
        scored_dir.mkdir(parents=True, exist_ok=True)
        settings_file.write_text(json.dumps(settings, indent=2) + "\n")
    for clip_id, row in done.items():
        if clip_id in references and row["reference"] != references[clip_id]:
            raise ValueError(
                f"{scored_dir} was written for other data (clip {clip_id} has another reference); "
                "use another output_dir or delete that folder"
            )


# --- Selection -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundSelection:
    """What one round trains on, decided from its scored rows (in input order)."""

    rows: list[dict]
    best_index: list[int]
    best_reward: list[float]
    threshold: float | None
    target_source: list[str]  # per row: "sample" (its best sample), "reference" (fallback) or "dropped"

    @property
    def training_rows(self) -> list[int]:
        return [index for index, source in enumerate(self.target_source) if source != "dropped"]

    def target(self, index: int) -> str:
        row = self.rows[index]
        return row["reference"] if self.target_source[index] == "reference" else row["samples"][self.best_index[index]]

    def summary(self) -> dict[str, Any]:
        """Reward distribution of the best samples, threshold and counts (for the model card and the log)."""
        rewards = np.asarray(self.best_reward, dtype=float)
        counts = {source: self.target_source.count(source) for source in ("sample", "reference", "dropped")}
        summary: dict[str, Any] = {
            "inputs": len(self.rows),
            "kept": len(self.training_rows),
            "kept_samples": counts["sample"],
            "reference_fallbacks": counts["reference"],
            "dropped": counts["dropped"],
            "threshold": self.threshold,
        }
        if len(rewards):
            summary["best_reward_mean"] = float(rewards.mean())
            summary["best_reward_min"] = float(rewards.min())
            summary["best_reward_max"] = float(rewards.max())
            for quantile in REWARD_QUANTILES:
                summary[f"best_reward_p{round(100 * quantile)}"] = float(np.quantile(rewards, quantile))
            all_rewards = np.concatenate([np.asarray(row["rewards"], dtype=float) for row in self.rows])
            summary["sample_reward_mean"] = float(all_rewards.mean())
        return summary


def select_training_targets(
    rows: Sequence[dict],
    drop_fraction: float = DEFAULT_DROP_FRACTION,
    *,
    reference_fallback: bool = False,
    reference_fallback_margin: float = 0.0,
) -> RoundSelection:
    """Best of k per clip and the original drop rule; with ``reference_fallback``, references replace weak samples.

    A clip whose best sample scores below ``reference_reward - reference_fallback_margin`` (the reference scored
    against itself under the same rewards: 1.0 with the default rewards, less when e.g. the format reward finds an
    unknown tag in the reference) trains on its reference instead, whether or not the threshold would have dropped
    it. The threshold is always computed from the best samples, as in the original, and still drops the clips that
    keep their sample.
    """
    rows = list(rows)
    selection = select_best_of_k([row["rewards"] for row in rows], drop_fraction)
    kept = set(selection.kept)
    sources = []
    for index, row in enumerate(rows):
        if reference_fallback and selection.best_reward[index] < row["reference_reward"] - reference_fallback_margin:
            sources.append("reference")
        else:
            sources.append("sample" if index in kept else "dropped")
    return RoundSelection(rows, selection.best_index, selection.best_reward, selection.threshold, sources)


def format_selection_summary(summary: dict[str, Any]) -> str:
    if not summary["inputs"]:
        return "no clips scored"
    quantiles = ", ".join(
        f"p{round(100 * q)} {summary[f'best_reward_p{round(100 * q)}']:.3f}" for q in REWARD_QUANTILES
    )
    fallbacks = f" ({summary['reference_fallbacks']} on their reference)" if summary["reference_fallbacks"] else ""
    return (
        f"{summary['inputs']} clips -> {summary['kept']} kept{fallbacks}; best-of-k reward mean "
        f"{summary['best_reward_mean']:.3f} ({quantiles}; min {summary['best_reward_min']:.3f}, max "
        f"{summary['best_reward_max']:.3f}), threshold {summary['threshold']:.3f}"
    )


def save_samples_dataset(selection: RoundSelection, path: Path) -> Path:
    """Every clip's k samples, their rewards (combined and per reward) and the round's decision, as a dataset."""
    import datasets

    rows = selection.rows
    columns: dict[str, list] = {
        "id": [row["id"] for row in rows],
        "reference": [row["reference"] for row in rows],
        "samples": [row["samples"] for row in rows],
        "rewards": [row["rewards"] for row in rows],
        "reference_reward": [row["reference_reward"] for row in rows],
        "best_index": selection.best_index,
        "best_reward": selection.best_reward,
        "target_source": selection.target_source,
        "target": [
            None if source == "dropped" else selection.target(i) for i, source in enumerate(selection.target_source)
        ],
    }
    for name in rows[0]["components"] if rows else ():
        columns[f"reward_{name}"] = [row["components"][name] for row in rows]
    dataset = datasets.Dataset.from_dict(columns)
    dataset.save_to_disk(str(path))
    return path


# --- Rounds --------------------------------------------------------------------------------------------------------


ROUND_FILE = "raft_round.json"
SUMMARY_FILE = "raft_summary.json"


def round_dir(output_dir: str | Path, round_number: int) -> Path:
    return Path(output_dir) / f"round_{round_number}"


def sampling_settings(args: RaftArguments, model: str, adapter: str | None, language: str | None) -> dict[str, Any]:
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
    }


def training_split(data, selection: RoundSelection, positions: Sequence[int], text_column: str):
    """The kept clips with their target (best sample or reference fallback) in place of the reference."""
    kept = selection.training_rows
    rows = data.select([positions[index] for index in kept]).remove_columns(text_column)
    return rows.add_column(text_column, [selection.target(index) for index in kept])


@dataclass
class RaftRun:
    """Everything a round needs besides its number and starting point."""

    raft_args: RaftArguments
    training_args: SFTConfig
    model_args: ModelConfig
    sft_args: VoxtralSFTArguments
    train_rows: Any  # datasets.Dataset, audio undecoded
    eval_rows: Any
    state: Any  # accelerate.PartialState


def run_round(run: RaftRun, round_number: int, model_source: str, adapter: str | None):
    """Sample, select and train one round into ``round_<r>/``; returns (summary, trainer)."""
    from evoxtral.data.splits import clip_ids, decodable_clips
    from evoxtral.training import (
        last_complete_checkpoint,
        load_sft_model,
        make_sft_trainer,
        prepare_sft_dataset,
        voxtral_lora_config,
    )

    args, sft_args, state = run.raft_args, run.sft_args, run.state
    folder = round_dir(run.training_args.output_dir, round_number)
    data = run.train_rows
    ids, audios = clip_ids(data, args.id_column), data[sft_args.audio_column]
    positions, _ = decodable_clips(audios, ids)
    model, processor = load_sft_model(
        run.model_args, sft_args, model_name_or_path=model_source, adapter=adapter, device=state.device
    )
    references = data[sft_args.text_column]
    rows = sample_and_score(
        model,
        processor,
        [audios[i] for i in positions],
        [references[i] for i in positions],
        [ids[i] for i in positions],
        folder / SCORED_DIR,
        args,
        settings=sampling_settings(args, model_source, adapter, sft_args.language),
        seed=run.training_args.seed + 1_000_003 * round_number,
        language=sft_args.language,
        process_index=state.process_index,
        num_processes=state.num_processes,
        wait_for_everyone=state.wait_for_everyone,
    )
    selection = select_training_targets(
        rows,
        args.drop_fraction,
        reference_fallback=args.reference_fallback,
        reference_fallback_margin=args.reference_fallback_margin,
    )
    summary = {"round": round_number, "started_from": adapter or model_source, **selection.summary()}
    print(f"Round {round_number}: {format_selection_summary(summary)}")
    if state.is_main_process:
        save_samples_dataset(selection, folder / SAMPLES_DATASET_DIR)
    if not selection.training_rows:
        raise ValueError(
            f"round {round_number}: no clip scored above the threshold {selection.threshold}, nothing to train on; "
            "lower drop_fraction or set reference_fallback"
        )

    round_args = dataclasses.replace(
        run.training_args,
        output_dir=str(folder),
        push_to_hub=False,
        run_name=f"{run.training_args.run_name}-round{round_number}" if run.training_args.run_name else None,
    )
    num_proc = round_args.dataset_num_proc
    train_dataset = prepare_sft_dataset(
        training_split(data, selection, positions, sft_args.text_column), sft_args, processor, None, num_proc
    )
    eval_dataset = None
    if run.eval_rows is not None:
        eval_dataset = prepare_sft_dataset(run.eval_rows, sft_args, processor, None, num_proc)
    peft_config = None if isinstance(model, PeftModel) else voxtral_lora_config(run.model_args, sft_args)
    trainer, generation_eval = make_sft_trainer(
        model, processor, round_args, sft_args, train_dataset, eval_dataset, peft_config=peft_config
    )
    checkpoint = last_complete_checkpoint(folder) if sft_args.auto_resume else None
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.model.config.use_cache = True
    trainer.save_model(str(folder))
    summary["train_metrics"] = train_result.metrics
    summary["bench"] = generation_eval.latest_scores if generation_eval else {}
    summary["bench_samples"] = len(generation_eval.audios) if generation_eval else 0
    if state.is_main_process:
        write_tokenizer_config(folder)
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
    from accelerate import PartialState

    from evoxtral.data.splits import load_training_splits, prepare_rows

    if sft_args.random_init:
        raise ValueError("RAFT continues a trained model: random_init does not apply")
    state = PartialState()
    set_seed(training_args.seed)
    train_rows, eval_rows = load_training_splits(
        raft_args, seed=training_args.seed, with_eval=training_args.eval_strategy != "no"
    )
    columns = {"audio_column": sft_args.audio_column, "text_column": sft_args.text_column}
    train_rows = prepare_rows(train_rows, **columns, limit=sft_args.max_train_samples)
    if eval_rows is not None:
        eval_rows = prepare_rows(eval_rows, **columns, limit=sft_args.max_eval_samples)
    run = RaftRun(raft_args, training_args, model_args, sft_args, train_rows, eval_rows, state)
    output_dir = Path(training_args.output_dir)
    summaries, trainer = [], None
    model_source, adapter = model_args.model_name_or_path, raft_args.adapter
    for round_number in range(1, raft_args.rounds + 1):
        done = round_dir(output_dir, round_number) / ROUND_FILE
        if done.exists():
            summary = json.loads(done.read_text())
            print(f"Round {round_number} already done: {format_selection_summary(summary)}")
        else:
            summary, trainer = run_round(run, round_number, model_source, adapter)
        summaries.append(summary)
        # the next round loads this round's folder: an adapter (its base named inside) or a whole model
        model_source, adapter = str(round_dir(output_dir, round_number)), None
    if state.is_main_process:
        release_last_round(Path(model_source), run, summaries, recipe)
        print_raft_summary(run, summaries)
    if trainer is not None and hasattr(trainer, "end"):  # finish the trackers, destroy the process group
        trainer.end()
    return summaries


def release_last_round(last_round: Path, run: RaftRun, summaries: list[dict], recipe: str | None) -> None:
    """Copy the last round's model to the top of output_dir with a model card, the recipe and the summaries."""
    import shutil

    from evoxtral.training import key_settings, push_folder_to_hub, write_model_card

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
    recipe = recipe or yaml.safe_dump(settings, sort_keys=False)
    (output_dir / "recipe.yaml").write_text(recipe)
    last = summaries[-1]
    write_model_card(
        output_dir,
        settings=settings,
        recipe=recipe,
        bench_scores=last.get("bench") or {},
        bench_samples=last.get("bench_samples", 0),
        bench_protocol=run.sft_args.bench_protocol,
        results=last.get("train_metrics") or {},
        is_adapter=(output_dir / "adapter_config.json").is_file(),
        stage="RAFT",
        extra_sections=render_raft_card_section(summaries, run.raft_args, run.training_args),
    )
    if run.training_args.push_to_hub:
        push_folder_to_hub(run.training_args, stage="RAFT")


def print_raft_summary(run: RaftRun, summaries: list[dict]) -> None:
    output_dir = run.training_args.output_dir
    print(f"\nRAFT, {len(summaries)} round(s) on {run.raft_args.dataset_name} ({run.raft_args.dataset_train_split}):")
    for summary in summaries:
        loss = (summary.get("train_metrics") or {}).get("train_loss")
        print(
            f"  round {summary['round']}: {format_selection_summary(summary)}"
            + (f"; train loss {loss:.4f}" if loss is not None else "")
        )
    print(
        f"Final model + model card (README.md) + recipe.yaml: {output_dir}/\n"
        f"Per round: {output_dir}/round_<r>/ (its model, {SCORED_DIR}/*.jsonl with every sample and reward, "
        f"{SAMPLES_DATASET_DIR}/ the same as a dataset with the selection)"
    )


def render_raft_card_section(summaries: list[dict], args: RaftArguments, training_args: SFTConfig) -> str:
    """The model card's RAFT section: the reward, the selection, and per round the reward distribution."""
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
        "## RAFT",
        "",
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
    return "\n".join(lines)
