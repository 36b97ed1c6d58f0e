"""A RAFT round's samples, kill-safe: k transcripts per clip, each scored with the recipe's rewards, appended to
``round_<r>/scored/samples-rank<n>.jsonl`` and flushed batch by batch.

A killed run resumes with the clips it has not scored yet (a line the kill cut short is dropped and its clip sampled
again); with several processes each writes its own shard. The model, sampling and reward settings are recorded
with the shards, and a resume under other settings, or on other references, is refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from evoxtral.configs import RaftArguments
from evoxtral.model import sampling, vllm_runner
from evoxtral.scoring.rewards import combined_reward, reward_components
from evoxtral.utils.jsonl import append_jsonl, read_jsonl, write_row

SCORED_DIR = "scored"
SETTINGS_FILE = "settings.json"


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


def read_scored_rows(scored_dir: Path) -> dict[str, dict]:
    """Rows already scored in ``scored_dir`` (every shard), by clip id; a line a kill cut short is skipped, so its
    clip is sampled again."""
    rows: dict[str, dict] = {}
    for shard in sorted(scored_dir.glob("samples-*.jsonl")):
        for row in read_jsonl(shard):
            rows.setdefault(row["id"], row)
    return rows


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
    vllm_export=None,
) -> list[dict]:
    """Sample and score every clip not yet in ``scored_dir``; returns all scored rows in input order.

    With several processes each scores its share of the clips left into its own shard; ``wait_for_everyone`` is
    the barrier that keeps a process from appending before all have read what is there. ``settings`` (model,
    sampling and reward options) are recorded with the shards, and a resume under other settings is refused. A
    batch's sampling seed is ``seed`` plus the input position of its first clip.

    ``args.sampler == "vllm"``: sample with vLLM from ``vllm_export`` (a `VllmExport`, on the main process)
    instead of ``model``. The main process samples every clip left in one engine run (an engine start costs what
    many batches do) and the others wait; the rows are written once that run is back.
    """
    done = read_scored_rows(scored_dir)
    _check_same_run(done, dict(zip(ids, references)), settings, scored_dir, is_main=process_index == 0)
    wait_for_everyone()
    pending = [index for index, clip_id in enumerate(ids) if clip_id not in done]
    use_vllm = args.sampler == "vllm"
    if not use_vllm:
        mine, batch_size = pending[process_index::num_processes], args.sampling_batch_size
    else:
        mine, batch_size = (pending if process_index == 0 else []), max(1, len(pending))
    scored_dir.mkdir(parents=True, exist_ok=True)
    shard = scored_dir / f"samples-rank{process_index:03d}.jsonl"
    with (
        append_jsonl(shard) as out,
        tqdm(total=len(ids), initial=len(ids) - len(pending), desc="Sampling", unit="clip",
             disable=process_index != 0) as bar,
    ):  # fmt: skip
        for start in range(0, len(mine), batch_size):
            batch = mine[start : start + batch_size]
            options = dict(k=args.samples_per_input, temperature=args.temperature, top_p=args.top_p,
                           max_new_tokens=args.max_new_tokens, seed=seed + batch[0], language=language)  # fmt: skip
            clips = [audios[index] for index in batch]
            if not use_vllm:
                samples_per_clip = sampling.sample_transcripts(
                    model, processor, clips, batch_size=batch_size, progress=False, **options
                )
            else:
                samples_per_clip = vllm_runner.sample_transcripts_vllm(vllm_export, processor, clips, **options)
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
                write_row(out, row)
            out.flush()
            bar.update(len(batch) * (1 if use_vllm else num_processes))
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
