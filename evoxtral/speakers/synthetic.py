"""Dialogue clips with known speaker turns, spoken by espeak-ng voices: what the diarization tests and the
diarization bench measure against (nothing downloaded, the same voices the offline data generator uses)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evoxtral.data.audio import SAMPLING_RATE, load_audio
from evoxtral.data.generation.espeak import run_espeak


@dataclass(frozen=True)
class SpokenTurn:
    speaker: str  # the espeak-ng voice that spoke it
    start: float  # seconds in the dialogue
    end: float


def espeak_dialogue(
    turns: Sequence[tuple[str, str]], gap_s: float = 0.8, edge_s: float = 0.3
) -> tuple[np.ndarray, list[SpokenTurn]]:
    """(voice, sentence) pairs spoken in order with ``gap_s`` of silence between turns: 16 kHz mono audio and
    where each turn's speech starts and ends (espeak-ng's own leading and trailing silence trimmed)."""
    pieces = [np.zeros(int(edge_s * SAMPLING_RATE), np.float32)]
    spoken = []
    cursor = len(pieces[0])
    for index, (voice, sentence) in enumerate(turns):
        speech = _trimmed(load_audio(run_espeak(f"<speak>{sentence}</speak>", voice)))
        if index:
            pieces.append(np.zeros(int(gap_s * SAMPLING_RATE), np.float32))
            cursor += len(pieces[-1])
        pieces.append(speech)
        spoken.append(SpokenTurn(voice, cursor / SAMPLING_RATE, (cursor + len(speech)) / SAMPLING_RATE))
        cursor += len(speech)
    pieces.append(np.zeros(int(edge_s * SAMPLING_RATE), np.float32))
    return np.concatenate(pieces), spoken


def _trimmed(audio: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > floor)
    return audio[loud[0] : loud[-1] + 1] if loud.size else audio


# The set the speaker-count test's threshold was chosen on (bench/diarization.py): six voice pairs in four turns and
# four single voices reading four sentences. The tests use other voices' pairings and other sentences.
CALIBRATION_SENTENCES = (
    "Hello there, how was your weekend at the lake?",
    "It was lovely, we went swimming every single morning.",
    "That sounds wonderful, I wish I had come along with you.",
    "Next time you should, the cabin has plenty of room.",
    "I will bring the fishing rods and some good books.",
    "Perfect, and I will cook dinner on the first night.",
    "Do you remember the storm we had last summer?",
    "Of course, the power was out for two whole days.",
)
CALIBRATION_PAIRS = (
    ("en-us+m3", "en-us+f2"), ("en+m1", "en-gb+f4"), ("en-us+m3", "en+m1"),
    ("en-us+f2", "en+f3"), ("en-us+m7", "en-gb+f4"), ("en-us", "en-gb"),
)  # fmt: skip
CALIBRATION_SINGLES = ("en-us+m3", "en-us+f2", "en+m1", "en-gb+f4")


@dataclass(frozen=True)
class DialogueCase:
    name: str
    audio: np.ndarray
    turns: list[SpokenTurn]

    @property
    def speakers(self) -> int:
        return len({turn.speaker for turn in self.turns})


def calibration_dialogues(gap_s: float = 0.8) -> list[DialogueCase]:
    lines = CALIBRATION_SENTENCES
    cases = []
    for first, second in CALIBRATION_PAIRS:
        script = [(first, lines[0]), (second, lines[1]), (first, lines[2]), (second, lines[3])]
        cases.append(DialogueCase(f"{first} / {second}", *espeak_dialogue(script, gap_s)))
    for voice in CALIBRATION_SINGLES:
        cases.append(DialogueCase(voice, *espeak_dialogue([(voice, line) for line in lines[4:]], gap_s)))
    return cases


def largest_turn_change_error(spoken: Sequence[SpokenTurn], found_starts: Sequence[float]) -> float | None:
    """Seconds between each true change of speaker and the nearest change found (the worst of them); None when
    the dialogue has changes and none was found, 0.0 when it has none."""
    changes = [turn.start for previous, turn in zip(spoken, spoken[1:]) if turn.speaker != previous.speaker]
    if not changes:
        return 0.0
    if not found_starts:
        return None
    return max(min(abs(change - found) for found in found_starts) for change in changes)
