"""A transcription's segments -> the native result and the OpenAI response formats (json, text, srt, vtt,
verbose_json). Subtitles keep the inline tags: they are the point of an expressive transcript."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from evoxtral.scoring.tags import extract_tags, plain_text, segment_emotion, tag_names

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")


@dataclass(frozen=True)
class TimedText:
    start: float  # seconds
    end: float
    text: str  # tagged transcript of the segment


def full_text(segments: list[TimedText]) -> str:
    return " ".join(segment.text.strip() for segment in segments if segment.text.strip())


def native_result(segments: list[TimedText], duration: float, language: str | None, model: str) -> dict:
    """Tagged and plain text, every tag with its position, and each segment's times, tags and emotion."""
    text = full_text(segments)
    return {
        "model": model,
        "language": language,
        "duration": round(duration, 3),
        "text": text,
        "plain_text": plain_text(text),
        "tags": [asdict(span) for span in extract_tags(text)],
        "emotion": asdict(segment_emotion(text)),
        "segments": [
            {
                "id": index,
                "start": round(segment.start, 3),
                "end": round(segment.end, 3),
                "text": segment.text.strip(),
                "plain_text": plain_text(segment.text),
                "tags": tag_names(segment.text),
                "emotion": asdict(segment_emotion(segment.text)),
            }
            for index, segment in enumerate(segments)
        ],
    }


def verbose_json_result(segments: list[TimedText], duration: float, language: str | None, temperature: float) -> dict:
    """OpenAI's verbose_json shape. Fields the model does not produce (log-probabilities, no-speech probability,
    token ids) are left out rather than invented; each segment carries its tags and emotion in addition."""
    return {
        "task": "transcribe",
        "language": language,
        "duration": round(duration, 3),
        "text": full_text(segments),
        "segments": [
            {
                "id": index,
                "seek": int(segment.start * 100),
                "start": round(segment.start, 3),
                "end": round(segment.end, 3),
                "text": segment.text.strip(),
                "temperature": temperature,
                "tags": tag_names(segment.text),
                "emotion": asdict(segment_emotion(segment.text)),
            }
            for index, segment in enumerate(segments)
        ],
        "usage": {"type": "duration", "seconds": round(duration, 3)},
    }


def _timestamp(seconds: float, decimal_marker: str) -> str:
    milliseconds = round(seconds * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    seconds, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{decimal_marker}{milliseconds:03d}"


def _cues(segments: list[TimedText]) -> list[TimedText]:
    return [segment for segment in segments if segment.text.strip()]


def srt(segments: list[TimedText]) -> str:
    blocks = [
        f"{index}\n{_timestamp(cue.start, ',')} --> {_timestamp(cue.end, ',')}\n{cue.text.strip()}\n"
        for index, cue in enumerate(_cues(segments), start=1)
    ]
    return "\n".join(blocks)


def vtt(segments: list[TimedText]) -> str:
    # WebVTT reserves "<" and "&" in cue text; square-bracket tags need no escaping.
    blocks = [
        f"{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}\n"
        + cue.text.strip().replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        + "\n"
        for cue in _cues(segments)
    ]
    return "\n".join(["WEBVTT\n", *blocks])
