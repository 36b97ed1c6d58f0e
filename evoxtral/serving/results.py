"""A transcription's segments -> the native result, the seed's diarized result and the OpenAI response formats
(json, text, srt, vtt, verbose_json, diarized_json). Subtitles keep the inline tags: they are the point of an
expressive transcript. Segments carry a ``speaker`` ("Speaker 1" ...) when the request asked for speakers: in the
JSON formats as a field, in SRT as a "Speaker 1: " prefix and in WebVTT as a voice span (``<v Speaker 1>``).
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

from evoxtral.scoring.tags import extract_tags, plain_text, segment_emotion, tag_names

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json", "diarized_json")


@dataclass(frozen=True)
class TimedText:
    start: float  # seconds
    end: float
    text: str  # tagged transcript of the segment
    speaker: str | None = None  # "Speaker 1" ... when diarized
    tokens: tuple[int, ...] = ()  # generated token ids, when the transcriber reports them
    avg_logprob: float | None = None  # mean token log-probability, when the transcriber reports it
    no_speech_prob: float | None = None  # 1 - silero-vad's mean speech probability over the segment


def compression_ratio(text: str) -> float:
    """Whisper's repetition check: UTF-8 bytes over their zlib-compressed size (above ~2.4: a loop)."""
    data = text.encode("utf-8")
    return round(len(data) / len(zlib.compress(data)), 4) if data else 0.0


def _speaker_field(segment: TimedText) -> dict:
    return {"speaker": segment.speaker} if segment.speaker is not None else {}


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
                **_speaker_field(segment),
            }
            for index, segment in enumerate(segments)
        ],
    }


def verbose_json_result(segments: list[TimedText], duration: float, language: str | None, temperature: float) -> dict:
    """OpenAI's verbose_json shape, every segment field the openai client's TranscriptionSegment requires: token ids
    and their mean log-probability as the model generated them (empty and null for a transcriber that does not
    report them), Whisper's compression ratio of the text, and the no-speech probability from silero-vad. Each segment
    carries its tags and emotion (and speaker, when diarized) in addition."""
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
                "tokens": list(segment.tokens),
                "temperature": temperature,
                "avg_logprob": None if segment.avg_logprob is None else round(segment.avg_logprob, 4),
                "compression_ratio": compression_ratio(segment.text.strip()),
                "no_speech_prob": segment.no_speech_prob,
                "tags": tag_names(segment.text),
                "emotion": asdict(segment_emotion(segment.text)),
                **_speaker_field(segment),
            }
            for index, segment in enumerate(segments)
        ],
        "usage": {"type": "duration", "seconds": round(duration, 3)},
    }


def diarized_json_result(segments: list[TimedText], duration: float) -> dict:
    """OpenAI's diarized_json shape (TranscriptionDiarized), plus each segment's tags and emotion."""
    return {
        "task": "transcribe",
        "duration": round(duration, 3),
        "text": full_text(segments),
        "segments": [
            {
                "type": "transcript.text.segment",
                "id": f"seg_{index}",
                "speaker": segment.speaker or "Speaker 1",
                "start": round(segment.start, 3),
                "end": round(segment.end, 3),
                "text": segment.text.strip(),
                "tags": tag_names(segment.text),
                "emotion": asdict(segment_emotion(segment.text)),
            }
            for index, segment in enumerate(segments)
        ],
        "usage": {"type": "duration", "seconds": round(duration, 3)},
    }


def seed_diarized_result(segments: list[TimedText], diarization_method: str) -> dict:
    """The original Voxtral Server's /transcribe-diarize shape: emotion as a label with valence and arousal beside
    it. Audio only here (facial emotion has its own route, POST /fer), so no face timeline."""
    rows = []
    for index, segment in enumerate(segments):
        emotion = segment_emotion(segment.text)
        rows.append(
            {
                "id": index,
                "speaker": segment.speaker or "Speaker 1",
                "start": round(segment.start, 3),
                "end": round(segment.end, 3),
                "text": segment.text.strip(),
                "emotion": emotion.emotion,
                "valence": emotion.valence,
                "arousal": emotion.arousal,
                "tags": tag_names(segment.text),
            }
        )
    return {
        "segments": rows,
        "face_emotion_timeline": [],
        "has_video": False,
        "diarization_method": diarization_method,
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
    # SRT has no speaker markup; "Name: " is the subtitling convention (brackets would read as an audio tag).
    blocks = [
        f"{index}\n{_timestamp(cue.start, ',')} --> {_timestamp(cue.end, ',')}\n"
        f"{f'{cue.speaker}: ' if cue.speaker else ''}{cue.text.strip()}\n"
        for index, cue in enumerate(_cues(segments), start=1)
    ]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    # WebVTT reserves "<" and "&" in cue text; square-bracket tags need no escaping.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt(segments: list[TimedText]) -> str:
    blocks = [
        f"{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}\n"
        + (f"<v {_vtt_escape(cue.speaker)}>" if cue.speaker else "")
        + _vtt_escape(cue.text.strip())
        + "\n"
        for cue in _cues(segments)
    ]
    return "\n".join(["WEBVTT\n", *blocks])
