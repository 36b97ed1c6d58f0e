"""The data generation run: scripts -> speech -> checked clips -> DatasetDict -> disk / Hub folder / Hub.

Resumable by construction. The script plan is written once (``scripts.jsonl``) and reused while the settings
that shape it are unchanged. Each clip is stored under its content hash (text, voice, backend and its settings)
as ``<key>.wav`` then ``<key>.json``, both written to a temporary name and renamed, and a clip counts as done only
when its ``.json`` exists. Killing the run at any point and running it again therefore redoes at most the clips
that were in flight, never pays twice for a finished one, and cannot leave a duplicate or a half-written file.
The dataset is assembled from the plan and the store at the end.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from evoxtral.configs import DataGenArguments
from evoxtral.data.audio import encode_wav
from evoxtral.data.generation import dataset as hub
from evoxtral.data.generation import recordings
from evoxtral.data.generation.backends import (
    SAMPLING_RATE,
    AudioCheck,
    RetryPolicy,
    SpeechBackend,
    SynthesisError,
    SynthesisRequest,
    clip_key,
    synthesize_checked,
)
from evoxtral.data.generation.composers import COMPOSERS
from evoxtral.data.generation.files import write_atomic
from evoxtral.data.generation.scripts import Script, ScriptPlan, generate_scripts, load_scripts_file
from evoxtral.data.generation.slices import DEFAULT_SLICE_FRACTIONS, DEFAULT_SPLIT_RATIOS, DOMAINS, tag_set_for

# --- The script plan ------------------------------------------------------------------------------------------


def _plan_fingerprint(args: DataGenArguments) -> str:
    # the generator's defaults filled in, so a setting left unset and the same value written out agree
    shaping = {key: getattr(args, key) for key in ("seed", "script_source", "num_clips", "min_support")}
    shaping["slice_fractions"] = args.slice_fractions or dict(DEFAULT_SLICE_FRACTIONS)
    shaping["domains"] = args.domains or list(DOMAINS)
    shaping["split_ratios"] = args.split_ratios or dict(DEFAULT_SPLIT_RATIOS)
    shaping["tags"] = tag_set_for(args.tags)
    if args.script_source == "file":
        shaping["scripts_file"] = hashlib.sha256(Path(args.scripts_file).read_bytes()).hexdigest()
    if args.script_source == "llm":
        shaping["llm"] = [args.llm_base_url, args.llm_model]
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def make_plan(args: DataGenArguments) -> ScriptPlan:
    if args.script_source == "file":
        return load_scripts_file(
            args.scripts_file, seed=args.seed, split_ratios=args.split_ratios, tag_set=tag_set_for(args.tags)
        )
    if args.script_source == "llm":
        from evoxtral.data.generation.llm import LLMComposer

        composer = LLMComposer(args.llm_base_url, args.llm_model, args.llm_token_env, args.llm_max_attempts)
        source = "llm"
    else:
        composer, source = COMPOSERS[args.script_source], "template"
        if args.script_source == "random_words" and args.word_bank_size is not None:
            composer = functools.partial(composer, word_bank_size=args.word_bank_size)
    plan = generate_scripts(
        args.num_clips,
        tag_set_for(args.tags),
        seed=args.seed,
        slice_fractions=args.slice_fractions,
        domains=args.domains or DOMAINS,
        split_ratios=args.split_ratios,
        min_support=args.min_support,
        composer=composer,
        source=source,
    )
    plan.rejected += [("llm answer", why) for why in getattr(composer, "rejected_answers", [])]
    return plan


def load_or_make_plan(args: DataGenArguments, output_dir: Path) -> ScriptPlan:
    """The run's scripts: reused from ``scripts.jsonl`` while the shaping settings match, made otherwise."""
    path, meta_path = output_dir / "scripts.jsonl", output_dir / "scripts.meta.json"
    fingerprint = _plan_fingerprint(args)
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") == fingerprint:
            scripts = [Script(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()]
            return ScriptPlan(
                scripts, [tuple(r) for r in meta["rejected"]], meta["fallbacks"],
                [tuple(w) for w in meta.get("warnings", [])], meta.get("rejected_reasons", {}),
                meta.get("warning_reasons", {}),
            )  # fmt: skip
    plan = make_plan(args)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "".join(script.to_json() + "\n" for script in plan.scripts).encode("utf-8"))
    meta = {
        "fingerprint": fingerprint, "rejected": plan.rejected, "fallbacks": plan.fallbacks, "warnings": plan.warnings,
        "rejected_reasons": plan.rejected_reasons, "warning_reasons": plan.warning_reasons,
    }  # fmt: skip
    write_atomic(meta_path, json.dumps(meta).encode())
    return plan


# --- The clip store -------------------------------------------------------------------------------------------


class ClipStore:
    """Finished clips by content hash: ``<key>.wav`` (16 kHz PCM) and ``<key>.json``, the latter marking done."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        # a run killed between writing and renaming leaves a temporary file: never a clip, safe to drop
        for leftover in self.root.glob("*/*.tmp"):
            leftover.unlink(missing_ok=True)

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / key[:2]
        return folder / f"{key}.wav", folder / f"{key}.json"

    def get(self, key: str) -> dict | None:
        wav, meta = self._paths(key)
        if not meta.exists() or not wav.exists():
            return None
        return json.loads(meta.read_text(encoding="utf-8"))

    def put(self, key: str, audio, record: dict) -> dict:
        wav, meta = self._paths(key)
        wav.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(wav, encode_wav(audio, SAMPLING_RATE))
        record = {**record, "key": key, "duration": round(audio.size / SAMPLING_RATE, 3)}
        write_atomic(meta, json.dumps(record, ensure_ascii=False).encode("utf-8"))
        return record

    def wav_bytes(self, key: str) -> bytes:
        return self._paths(key)[0].read_bytes()


# --- The run ----------------------------------------------------------------------------------------------------


def make_backend(args: DataGenArguments, cache_dir: Path) -> SpeechBackend:
    if args.backend == "espeak":
        from evoxtral.data.generation.espeak import EspeakBackend

        # a user's own scripts may carry any ElevenLabs v3 tag: those outside the vocabulary stay in the text unvoiced
        skip_unknown = args.script_source == "file"
        return EspeakBackend(args.voices, cache_dir / "sounds", args.render_overrides, args.concurrency, skip_unknown)
    if args.backend == "elevenlabs":
        from evoxtral.data.generation.elevenlabs_backend import ElevenLabsBackend

        return ElevenLabsBackend(
            args.voices, model_id=args.elevenlabs_model, output_format=args.output_format,
            base_url=args.elevenlabs_base_url, concurrency=args.concurrency, timeout_s=args.request_timeout_s,
        )  # fmt: skip
    raise ValueError(f"backend {args.backend!r}: use espeak or elevenlabs")


@dataclass
class RunSummary:
    output_dir: str
    origin: str = ""  # where the audio and text came from, in words (also on the card)
    clips: dict[str, int] = field(default_factory=dict)
    hours: dict[str, float] = field(default_factory=dict)
    tag_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    synthesized: int = 0
    reused: int = 0
    decoded: int = 0  # recordings read (source: audio_folder or hub)
    failures: dict[str, str] = field(default_factory=dict)  # clip id -> why (synthesis failed, audio unreadable)
    rejected_scripts: list[tuple[str, str]] = field(default_factory=list)
    rejected_reasons: dict[str, int] = field(default_factory=dict)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # kept scripts worth a look: (where, what)
    warning_reasons: dict[str, int] = field(default_factory=dict)
    tags_outside_set: dict[str, int] = field(default_factory=dict)  # kept tags the configured set does not name
    llm_fallbacks: int = 0
    over_30s: int = 0
    under_min_support: list[str] = field(default_factory=list)
    dataset_path: str = ""
    hub_folder: str | None = None
    hub_url: str | None = None
    seconds: float = 0.0

    def render(self) -> str:
        total = sum(self.clips.values())
        made = (
            f"{self.decoded} recordings decoded"
            if self.decoded
            else f"{self.synthesized} synthesised, {self.reused} reused from the clip store"
        )
        lines = [
            f"Dataset: {total} clips, {sum(self.hours.values()):.3f} h in {self.seconds:.1f} s ({made}) "
            f"-> {self.dataset_path}",
            f"  from {self.origin}",
        ]
        for split, count in self.clips.items():
            tags_text = ", ".join(f"{tag} {n}" for tag, n in sorted(self.tag_counts[split].items()))
            lines.append(f"  {split}: {count} clips, {self.hours[split]:.3f} h; tags: {tags_text or 'none'}")
        if self.over_30s:
            lines.append(f"  {self.over_30s} clips over 30 s (kept, flagged in over_30s)")
        if self.under_min_support:
            lines.append("  below min_support: " + "; ".join(self.under_min_support))
        if self.tags_outside_set:
            outside = ", ".join(f"{tag} {n}" for tag, n in sorted(self.tags_outside_set.items()))
            lines.append(f"  tags outside the configured set (kept under their normalised names): {outside}")
        if self.warnings:
            reasons = ", ".join(f"{n} x {why}" for why, n in sorted(self.warning_reasons.items()))
            lines.append(f"Warnings on kept records: {len(self.warnings)} ({reasons})")
            lines += [f"  {where}: {what}" for where, what in self.warnings[:10]]
        if self.rejected_scripts:
            reasons = ", ".join(f"{n} x {why}" for why, n in sorted(self.rejected_reasons.items()))
            lines.append(f"Rejected: {len(self.rejected_scripts)}" + (f" ({reasons})" if reasons else ""))
            lines += [f"  {where}: {why}" for where, why in self.rejected_scripts[:10]]
        if self.llm_fallbacks:
            lines.append(f"LLM scripts replaced by template scripts after failing validation: {self.llm_fallbacks}")
        if self.failures:
            reasons = Counter(why for why in self.failures.values())
            retried = "; a rerun retries them" if not self.decoded else ""
            lines.append(f"Failed clips: {len(self.failures)} (skipped{retried})")
            lines += [f"  {n} x {why}" for why, n in reasons.most_common(10)]
        if self.hub_folder:
            lines.append(f"Hub folder: {self.hub_folder}" + (f" -> pushed to {self.hub_url}" if self.hub_url else ""))
        return "\n".join(lines)


def synthesize_all(
    jobs: list[tuple[Script, SynthesisRequest, str]],
    backend: SpeechBackend,
    store: ClipStore,
    policy: RetryPolicy,
    check: AudioCheck,
) -> tuple[int, dict[str, str]]:
    """Synthesise the jobs not yet in the store, ``backend.concurrency`` at a time; returns (made, failures)."""
    failures: dict[str, str] = {}
    made = 0
    pending = [job for job in jobs if store.get(job[2]) is None]

    def work(job):
        script, request, key = job
        audio, attempts = synthesize_checked(backend, request, policy, check)
        record = {"text": request.text, "voice": request.voice, "backend": backend.name, "attempts": attempts}
        store.put(key, audio, record)

    with tqdm(total=len(jobs), initial=len(jobs) - len(pending), desc=f"speech ({backend.name})", unit="clip") as bar:
        pool = ThreadPoolExecutor(max_workers=max(1, backend.concurrency))
        try:
            queue = iter(pending)
            running = {}
            # bounded submission: at most `concurrency` clips in flight, so an interrupt wastes little
            for job in queue:
                running[pool.submit(work, job)] = job
                if len(running) >= backend.concurrency:
                    break
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    script, _, _ = running.pop(future)
                    try:
                        future.result()
                        made += 1
                    except SynthesisError as error:
                        failures[script.id] = str(error)
                    bar.update(1)
                    next_job = next(queue, None)
                    if next_job is not None:
                        running[pool.submit(work, next_job)] = next_job
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return made, failures


def synthesized_rows(args: DataGenArguments, output_dir: Path, summary: RunSummary) -> list[hub.ClipRow]:
    """source: synthesis. The plan's scripts spoken by the backend (clips already in the store reused)."""
    cache_dir = Path(args.cache_dir) if args.cache_dir else output_dir / "clips"
    plan = load_or_make_plan(args, output_dir)
    backend = make_backend(args, cache_dir)
    store = ClipStore(cache_dir)
    voices = backend.voices
    jobs = []
    for index, script in enumerate(plan.scripts):
        request = SynthesisRequest(script.tagged_text, voices[index % len(voices)])
        jobs.append((script, request, clip_key(backend, request)))
    made, failures = synthesize_all(
        jobs,
        backend,
        store,
        RetryPolicy(args.max_attempts, args.retry_base_delay_s),
        AudioCheck(min_duration_s=args.min_duration_s),
    )
    rows = []
    for script, request, key in jobs:
        record = store.get(key)
        if record is not None:
            rows.append(
                hub.ClipRow(
                    script.id, script.split, store.wav_bytes(key), script.tagged_text, script.slice, script.domain,
                    request.voice, backend.name, record["duration"],
                )
            )  # fmt: skip
    scripts_from = f"`{args.scripts_file}`" if args.script_source == "file" else f"{args.script_source} scripts"
    summary.origin = f"speech synthesised by `{backend.name}` from {scripts_from}"
    summary.synthesized, summary.reused, summary.failures = made, len(rows) - made, failures
    summary.rejected_scripts, summary.llm_fallbacks = plan.rejected, plan.fallbacks
    summary.rejected_reasons, summary.warnings, summary.warning_reasons = (
        plan.rejected_reasons, plan.warnings, plan.warning_reasons,
    )  # fmt: skip
    return rows


def recorded_rows(args: DataGenArguments, summary: RunSummary) -> list[hub.ClipRow]:
    """source: audio_folder or hub. Every listed recording whose transcript is well formed and whose audio decodes."""
    allowed = tag_set_for(args.tags)
    if args.source == "audio_folder":
        found = recordings.list_audio_folder(
            args.audio_dir, args.metadata_file, text_column=args.text_column, allowed_tags=allowed
        )
    else:
        found = recordings.list_dataset(
            args.dataset_name, config=args.dataset_config, splits=args.dataset_splits, audio_column=args.audio_column,
            text_column=args.text_column, id_column=args.id_column, allowed_tags=allowed,
        )  # fmt: skip
    rows, failures = recordings.decode_recordings(
        found, split_ratios=args.split_ratios, seed=args.seed, workers=args.concurrency
    )
    summary.origin, summary.decoded, summary.failures = found.origin, len(rows), failures
    summary.rejected_scripts, summary.rejected_reasons = found.rejected, dict(found.rejected_reasons)
    summary.warnings, summary.warning_reasons = found.warnings, dict(found.warning_reasons)
    if failures:
        summary.rejected_reasons[recordings.UNREADABLE] = len(failures)
    return rows


def run(args: DataGenArguments) -> RunSummary:
    started = time.perf_counter()
    output_dir = Path(args.output_dir)
    summary = RunSummary(output_dir=str(output_dir))
    synthesis = args.source == "synthesis"
    rows = synthesized_rows(args, output_dir, summary) if synthesis else recorded_rows(args, summary)
    if not rows:
        problems = "; ".join(sorted(set(summary.failures.values()))[:5]) or "; ".join(
            f"{n} x {why}" for why, n in summary.rejected_reasons.items()
        )
        raise RuntimeError(
            f"no clip could be {'synthesised' if synthesis else 'read'} ({problems or 'nothing listed'})"
        )
    dataset = hub.build_dataset_dict(rows)
    summary.dataset_path = str(hub.save_dataset(dataset, output_dir / "dataset"))
    counts = hub.tag_counts_per_split(dataset)
    tag_set = tag_set_for(args.tags)
    outside: Counter = Counter()
    for split, ds in dataset.items():
        summary.clips[split] = len(ds)
        summary.hours[split] = sum(ds["duration"]) / 3600
        summary.tag_counts[split] = dict(counts[split])
        summary.over_30s += sum(ds["over_30s"])
        outside.update({tag: n for tag, n in counts[split].items() if tag not in tag_set})
        short = [f"{tag} {counts[split][tag]}" for tag in tag_set if counts[split][tag] < args.min_support]
        if short and synthesis:  # recordings carry the tags they carry: min_support is the generator's promise
            summary.under_min_support.append(f"{split}: " + ", ".join(short))
    summary.tags_outside_set = dict(outside)
    if args.dry_run or args.push_to_hub:
        card = hub.render_card(
            dataset, pretty_name=args.pretty_name, license=args.license, backend=rows[0].backend,
            origin=summary.origin, synthetic=synthesis,
        )  # fmt: skip
        summary.hub_folder = str(hub.write_hub_folder(dataset, output_dir / "hub", card))
        if args.push_to_hub and not args.dry_run:
            summary.hub_url = hub.push_to_hub(summary.hub_folder, args.hub_repo_id, private=args.private)
    summary.seconds = time.perf_counter() - started
    write_atomic(output_dir / "summary.json", json.dumps(asdict(summary), indent=2).encode())
    return summary
