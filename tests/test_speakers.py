"""Speaker diarization: the offline diarizer on espeak-ng dialogues with known turns, turns -> model segments, the
pyannote adapter, and the speaker routes (/transcribe-diarize, diarized_json, subtitles with speakers).

The dialogue voices and sentences here are not the ones bench/diarization.py calibrated the speaker-count test on.
"""

import shutil

import numpy as np
import pytest
from conftest import encode
from fastapi.testclient import TestClient

from evoxtral.serving import ServeSettings, create_app
from evoxtral.serving.pipeline import label_speech_runs, plan_transcription, speaker_segments
from evoxtral.serving.segmentation import SAMPLING_RATE, Segment, SpeechSegmenter
from evoxtral.speakers import EmbeddingDiarizer, SpeakerTurn
from evoxtral.speakers.pyannote_backend import PyannoteDiarizer

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (make system-deps)")

FIRST, SECOND = "en+m1", "en-us+f2"
LINES = [
    "Good morning, did you manage to find the station?",
    "Yes, but the train left ten minutes early.",
    "Really? That happens far too often on this line.",
    "I know, so I took the bus and read my book instead.",
]


def scripted_transcriber(clips, options):
    return [f"[laughs] Words for {len(clip) / SAMPLING_RATE:.1f} s" for clip in clips]


@pytest.fixture(scope="module")
def dialogue():
    from evoxtral.speakers.synthetic import espeak_dialogue

    return espeak_dialogue([(FIRST, LINES[0]), (SECOND, LINES[1]), (FIRST, LINES[2]), (SECOND, LINES[3])], gap_s=0.8)


@pytest.fixture(scope="module")
def monologue():
    from evoxtral.speakers.synthetic import espeak_dialogue

    return espeak_dialogue([(FIRST, line) for line in LINES], gap_s=0.8)


@pytest.fixture(scope="module")
def segmenter():
    return SpeechSegmenter()


def test_two_voices_taking_four_turns_give_two_speakers_changing_at_the_turns(dialogue, segmenter):
    audio, spoken = dialogue
    plan = plan_transcription(audio, segmenter, EmbeddingDiarizer())
    assert plan.diarization_method == "mfcc"
    assert plan.speakers == ["Speaker 1", "Speaker 2", "Speaker 1", "Speaker 2"]
    for segment, turn in zip(plan.segments, spoken):
        assert abs(segment.start_s - turn.start) < 0.5 and abs(segment.end_s - turn.end) < 0.5


def test_one_voice_gives_one_speaker_and_a_given_count_is_obeyed(monologue, segmenter):
    audio, _ = monologue
    alone = plan_transcription(audio, segmenter, EmbeddingDiarizer())
    assert set(alone.speakers) == {"Speaker 1"} and len(alone.segments) >= 1
    forced = plan_transcription(audio, segmenter, EmbeddingDiarizer(), num_speakers=2)
    assert set(forced.speakers) == {"Speaker 1", "Speaker 2"}


def test_a_speech_run_across_a_change_of_speaker_is_cut_and_one_speaker_merges_across_short_pauses():
    second = SAMPLING_RATE
    runs = [Segment(0, 3 * second), Segment(int(3.4 * second), 5 * second), Segment(6 * second, 7 * second)]
    turns = [SpeakerTurn(0.0, 2.0, "Speaker 1"), SpeakerTurn(2.0, 5.2, "Speaker 2"), SpeakerTurn(5.9, 7, "Speaker 1")]
    pieces = label_speech_runs(runs, turns)
    assert [(piece.start / second, piece.end / second, speaker) for piece, speaker in pieces] == [
        (0.0, 2.0, "Speaker 1"), (2.0, 3.0, "Speaker 2"), (3.4, 5.0, "Speaker 2"), (6.0, 7.0, "Speaker 1"),
    ]  # fmt: skip
    merged = speaker_segments(pieces, max_segment_s=30, merge_gap_s=1.0)
    assert [(s.start / second, s.end / second, speaker) for s, speaker in merged] == [
        (0.0, 2.0, "Speaker 1"), (2.0, 5.0, "Speaker 2"), (6.0, 7.0, "Speaker 1"),
    ]  # fmt: skip


def test_pyannote_output_becomes_turns_named_by_first_appearance():
    class Span:
        def __init__(self, start, end):
            self.start, self.end = start, end

    class Annotation:  # what pyannote.audio 3.x returns (4.x wraps it as .speaker_diarization)
        def itertracks(self, yield_label):
            return [(Span(2.0, 3.5), "t1", "SPEAKER_00"), (Span(0.1, 1.8), "t0", "SPEAKER_01")]

    seen = {}

    def pipeline(waveform, **options):
        seen.update(shape=tuple(waveform["waveform"].shape), rate=waveform["sample_rate"], **options)
        return Annotation()

    turns = PyannoteDiarizer(loaded_pipeline=pipeline)(np.zeros(64000, np.float32), num_speakers=2)
    assert turns == [SpeakerTurn(0.1, 1.8, "Speaker 1"), SpeakerTurn(2.0, 3.5, "Speaker 2")]
    assert seen == {"shape": (1, 64000), "rate": 16000, "num_speakers": 2}


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ServeSettings(), transcriber=scripted_transcriber)) as test_client:
        yield test_client


def test_transcribe_diarize_answers_in_the_seed_shape_with_tags_and_emotions(client, dialogue):
    audio, spoken = dialogue
    response = client.post("/transcribe-diarize", files={"file": ("talk.wav", encode(audio, SAMPLING_RATE))})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"segments", "face_emotion_timeline", "has_video", "diarization_method"}
    assert body["diarization_method"] == "mfcc" and body["has_video"] is False
    segments = body["segments"]
    assert [segment["speaker"] for segment in segments] == ["Speaker 1", "Speaker 2", "Speaker 1", "Speaker 2"]
    assert [segment["id"] for segment in segments] == [0, 1, 2, 3]
    assert all(segment["tags"] == ["laughs"] and segment["text"].startswith("[laughs] ") for segment in segments)
    assert {segment["emotion"] for segment in segments} == {"joy"}  # [laughs] in the tag table
    assert all(-1 <= segment["valence"] <= 1 and 0 <= segment["arousal"] <= 1 for segment in segments)


def test_openai_diarized_json_and_speaker_labels_everywhere_when_asked(client, dialogue):
    from openai.types.audio import TranscriptionDiarized

    audio, _ = dialogue
    files = {"file": ("talk.wav", encode(audio, SAMPLING_RATE))}
    route = "/v1/audio/transcriptions"
    diarized = client.post(route, files=files, data={"response_format": "diarized_json"}).json()
    typed = TranscriptionDiarized.model_validate(diarized)
    assert [segment.speaker for segment in typed.segments] == ["Speaker 1", "Speaker 2", "Speaker 1", "Speaker 2"]
    verbose = client.post(route, files=files, data={"response_format": "verbose_json", "diarize": "true"}).json()
    assert [segment["speaker"] for segment in verbose["segments"]] == [s.speaker for s in typed.segments]
    assert verbose["segments"][0]["emotion"]["evidence"] == ["laughs"]
    native = client.post("/transcribe", files=files, data={"diarize": "true", "num_speakers": "2"}).json()
    assert [segment["speaker"] for segment in native["segments"]] == [s.speaker for s in typed.segments]
    plain = client.post("/transcribe", files=files).json()
    assert all("speaker" not in segment for segment in plain["segments"])
    vtt = client.post(route, files=files, data={"response_format": "vtt", "diarize": "true"}).text
    assert vtt.count("<v Speaker 1>[laughs] Words for") == 2 and vtt.count("<v Speaker 2>") == 2
    srt = client.post(route, files=files, data={"response_format": "srt", "diarize": "true"}).text
    assert [cue.split("\n")[2].split(":")[0] for cue in srt.strip().split("\n\n")] == [
        "Speaker 1", "Speaker 2", "Speaker 1", "Speaker 2",
    ]  # fmt: skip


def test_a_diarizer_that_cannot_load_is_a_503_and_plain_transcription_keeps_working(dialogue):
    audio, _ = dialogue
    files = {"file": ("talk.wav", encode(audio, SAMPLING_RATE))}
    settings = ServeSettings(diarizer="pyannote")  # pyannote.audio is not installed here
    with TestClient(create_app(settings, transcriber=scripted_transcriber)) as test_client:
        refused = test_client.post("/transcribe-diarize", files=files)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "diarizer_unavailable"
        assert "pip install pyannote.audio" in refused.json()["error"]["message"]
        assert test_client.post("/transcribe", files=files).status_code == 200


def test_a_diarized_stream_names_each_deltas_segment_and_sends_each_segment_with_its_speaker(client, dialogue):
    import json

    audio, _ = dialogue
    files = {"file": ("talk.wav", encode(audio, SAMPLING_RATE))}
    data = {"stream": "true", "response_format": "diarized_json"}
    with client.stream("POST", "/v1/audio/transcriptions", files=files, data=data) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    segments = [event for event in events if event["type"] == "transcript.text.segment"]
    assert [segment["speaker"] for segment in segments] == ["Speaker 1", "Speaker 2", "Speaker 1", "Speaker 2"]
    deltas = [event for event in events if event["type"] == "transcript.text.delta"]
    assert [delta["segment_id"] for delta in deltas] == [segment["id"] for segment in segments]
    assert events[-1]["type"] == "transcript.text.done"
    assert events[-1]["text"] == " ".join(segment["text"] for segment in segments)


def test_transcribe_with_speakers_needs_no_server(dialogue):
    from evoxtral.serving import transcribe_with_speakers

    audio, spoken = dialogue
    segments = transcribe_with_speakers(audio, scripted_transcriber)
    assert [segment.speaker for segment in segments] == ["Speaker 1", "Speaker 2", "Speaker 1", "Speaker 2"]
    assert all(segment.text.startswith("[laughs] Words for") for segment in segments)
    assert abs(segments[1].start - spoken[1].start) < 0.5
