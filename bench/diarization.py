"""Speaker diarization: which embedder finds the speakers of espeak-ng dialogues, and what diarizing costs per minute
of audio next to transcription alone, measured in the same run.

Part 1 runs every available embedder of the offline diarizer (mfcc always; resemblyzer when installed) on the
calibration dialogues (six voice pairs in four turns, four single voices): speakers found vs true, the worst error of
a change of speaker, and seconds per minute of audio. Part 2 times one long dialogue through the server's pipeline:
silero-vad + transcription (the baseline) against silero-vad + diarization + transcription.

    python bench/diarization.py [--model evoxtral-tiny] [--minutes 1.0] [--max_new_tokens 32]

On the built-in tiny model transcription is cheap and its text meaningless; pass a real model for a real ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm.auto import tqdm

from evoxtral.model.loading import load_model_and_processor
from evoxtral.serving.pipeline import plan_transcription
from evoxtral.serving.segmentation import SAMPLING_RATE, SpeechSegmenter
from evoxtral.serving.transcriber import DecodingOptions, model_transcriber
from evoxtral.speakers import DiarizerUnavailable, EmbeddingDiarizer, load_diarizer
from evoxtral.speakers.synthetic import (
    CALIBRATION_PAIRS,
    CALIBRATION_SENTENCES,
    calibration_dialogues,
    espeak_dialogue,
    largest_turn_change_error,
)


def available_diarizers() -> list[EmbeddingDiarizer]:
    diarizers = []
    for name in ("mfcc", "resemblyzer"):
        try:
            diarizers.append(load_diarizer(name))
        except DiarizerUnavailable as missing:
            print(f"(skipping {name}: {missing})")
    return diarizers


def compare_embedders(segmenter: SpeechSegmenter) -> None:
    cases = calibration_dialogues()
    minutes = sum(case.audio.size for case in cases) / SAMPLING_RATE / 60
    runs = {case.name: [(r.start_s, r.end_s) for r in segmenter.speech_runs(case.audio)] for case in cases}
    print(f"\nPart 1: {len(cases)} espeak-ng dialogues, {minutes:.1f} min of audio\n")
    print("| embedder | dialogue | speakers (true) | found | split score | worst change error (s) |")
    print("|---|---|---:|---:|---:|---:|")
    summary = []
    for diarizer in available_diarizers():
        diarizer(cases[0].audio, runs[cases[0].name])  # warm-up (imports, first calls), not timed
        correct, started = 0, time.perf_counter()
        for case in tqdm(cases, desc=diarizer.name, unit="clip", leave=False):
            windows, labels, clustering = diarizer.cluster(case.audio, runs[case.name])
            turns = diarizer(case.audio, runs[case.name])
            error = largest_turn_change_error(case.turns, [turn.start for turn in turns[1:]])
            correct += clustering.n_speakers == case.speakers
            score = "-" if clustering.split_score is None else f"{clustering.split_score:.2f}"
            shown = "none found" if error is None else f"{error:.2f}"
            print(f"| {diarizer.name} | {case.name} | {case.speakers} | {clustering.n_speakers} | {score} | {shown} |")
        seconds = (time.perf_counter() - started) / 2  # each case ran cluster() and __call__()
        summary.append((diarizer.name, correct, seconds / minutes))
    print("\n| embedder | speaker count right | seconds per minute of audio |\n|---|---:|---:|")
    for name, correct, per_minute in summary:
        print(f"| {name} | {correct} / {len(cases)} | {per_minute:.2f} |")


def long_dialogue(minutes: float) -> np.ndarray:
    first, second = CALIBRATION_PAIRS[0]
    lines = CALIBRATION_SENTENCES
    script = []
    while sum(len(line) for _, line in script) < minutes * 60 * 14:  # espeak-ng reads ~14 characters a second
        index = len(script)
        script.append(((first, second)[index % 2], lines[index % len(lines)]))
    return espeak_dialogue(script, gap_s=0.8)[0]


def compare_costs(segmenter: SpeechSegmenter, model_name: str, minutes: float, max_new_tokens: int) -> None:
    audio = long_dialogue(minutes)
    audio_minutes = audio.size / SAMPLING_RATE / 60
    transcriber = model_transcriber(*load_model_and_processor(model_name), max_new_tokens=max_new_tokens)
    options = DecodingOptions(language="en")
    timings = {}
    for label, diarizer in (("transcription alone", None), ("with diarization (mfcc)", EmbeddingDiarizer("mfcc"))):
        started = time.perf_counter()
        plan = plan_transcription(audio, segmenter, diarizer)
        planned = time.perf_counter()
        transcriber(plan.clips, options)
        finished = time.perf_counter()
        timings[label] = (planned - started, finished - planned, len(plan.segments))
    print(
        f"\nPart 2: one {audio_minutes:.2f} min dialogue, model {model_name}, {max_new_tokens} new tokens a segment\n"
    )
    print("| pipeline | segments | VAD (+ diarization) s/min | transcription s/min | total s/min |")
    print("|---|---:|---:|---:|---:|")
    for label, (plan_s, transcribe_s, segments) in timings.items():
        total = (plan_s + transcribe_s) / audio_minutes
        print(
            f"| {label} | {segments} | {plan_s / audio_minutes:.2f} | {transcribe_s / audio_minutes:.2f} | {total:.2f} |"
        )
    base, diarized = timings["transcription alone"], timings["with diarization (mfcc)"]
    extra = (diarized[0] - base[0]) / audio_minutes
    total_ratio = sum(diarized[:2]) / sum(base[:2])
    print(
        f"\nThe diarizer itself adds {extra:.2f} s per minute of audio ({extra * audio_minutes / sum(base[:2]):.0%} of "
        f"transcription alone). Segments cut at every change of speaker ({diarized[2]} instead of {base[2]}) change "
        f"the transcription's own cost too: the whole diarized pipeline took {total_ratio:.2f}x the time of "
        "transcription alone in this run."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="evoxtral-tiny")
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--skip_embedders", action="store_true", help="part 2 only")
    args = parser.parse_args()
    segmenter = SpeechSegmenter()
    if not args.skip_embedders:
        compare_embedders(segmenter)
    compare_costs(segmenter, args.model, args.minutes, args.max_new_tokens)


if __name__ == "__main__":
    main()
