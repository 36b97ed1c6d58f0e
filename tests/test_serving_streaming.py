"""stream=true on the OpenAI route, through the real openai client against a live uvicorn: token-by-token deltas
from the tiny Voxtral that join up to the done event's text, refusals as 4xx JSON before any event, a failure
mid-stream as an error event; and verbose_json read strictly as the client's own TranscriptionVerbose type."""

import threading
from pathlib import Path

import httpx
import pytest
import soundfile as sf
from conftest import encode, live_server

from evoxtral.serving import ServeSettings, create_app
from evoxtral.serving.transcriber import model_transcriber

SPEECH = Path(__file__).parent / "data" / "speech.ogg"  # two espeak-ng phrases 1.6 s apart: two segments


@pytest.fixture(scope="module")
def speech_wav():
    audio, rate = sf.read(SPEECH, dtype="float32")
    return encode(audio, rate, "WAV", "PCM_16")


@pytest.fixture(scope="module")
def tiny_server(tiny_model_and_processor):
    app = create_app(ServeSettings(), transcriber=model_transcriber(*tiny_model_and_processor, max_new_tokens=8))
    with live_server(app) as url:
        yield url


def openai_client(url):
    import openai

    return openai.OpenAI(base_url=f"{url}/v1", api_key="sk-local", max_retries=0)


def test_the_openai_client_streams_tokens_that_join_up_to_the_whole_transcript(tiny_server, speech_wav):
    client = openai_client(tiny_server)
    stream = client.audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", speech_wav, "audio/wav"), stream=True
    )
    events = list(stream)
    deltas = [event for event in events if event.type == "transcript.text.delta"]
    assert [event.type for event in events[len(deltas) :]] == ["transcript.text.done"]
    assert len(deltas) > 2  # token by token within the two segments, not one piece per segment
    done = events[-1].text
    assert "".join(event.delta for event in deltas) == done
    unstreamed = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", speech_wav, "audio/wav"))
    assert done == unstreamed.text  # greedy decoding: the same transcript either way


def test_verbose_json_is_the_clients_own_transcription_verbose_type(tiny_server, speech_wav, tiny_processor):
    from openai.types.audio import TranscriptionVerbose

    client = openai_client(tiny_server)
    raw = client.audio.transcriptions.with_raw_response.create(
        model="whisper-1",
        file=("speech.wav", speech_wav, "audio/wav"),
        response_format="verbose_json",
        timestamp_granularities=["segment"],
    )
    verbose = TranscriptionVerbose.model_validate(raw.http_response.json())  # strict: every required field there
    assert len(verbose.segments) == 2 and verbose.language == "en"
    for segment in verbose.segments:
        assert 0 < len(segment.tokens) <= 8 and segment.avg_logprob < 0
        assert tiny_processor.tokenizer.decode(segment.tokens, skip_special_tokens=True).strip() == segment.text
        assert 0 <= segment.no_speech_prob < 0.5  # silero-vad heard speech there
        assert segment.compression_ratio > 0


def test_a_bad_upload_with_stream_true_is_a_4xx_json_error_before_any_event(tiny_server):
    import openai

    response = httpx.post(
        f"{tiny_server}/v1/audio/transcriptions",
        files={"file": ("notes.wav", b"not audio at all" * 10)},
        data={"stream": "true"},
    )
    assert response.status_code == 400 and response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "invalid_audio"
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client(tiny_server).audio.transcriptions.create(
            model="whisper-1", file=("notes.wav", b"not audio at all" * 10), stream=True
        )
    assert refused.value.code == "invalid_audio"


def test_a_failure_after_the_stream_started_ends_it_with_an_error_event(speech_wav):
    import openai

    calls = threading.Semaphore(1)

    def second_segment_fails(clips, options):
        if not calls.acquire(blocking=False):
            raise RuntimeError("the model fell over")
        return [f"segment of {len(clip)} samples" for clip in clips]

    # max_batch 1: the two segments run as two model calls, the second one fails
    app = create_app(ServeSettings(max_batch=1), transcriber=second_segment_fails)
    with live_server(app) as url:
        stream = openai_client(url).audio.transcriptions.create(
            model="whisper-1", file=("speech.wav", speech_wav, "audio/wav"), stream=True
        )
        received = []
        with pytest.raises(openai.APIError) as failed:
            for event in stream:
                received.append(event)
        assert [event.type for event in received] == ["transcript.text.delta"]
        assert received[0].delta.startswith("segment of ")
        assert failed.value.body["code"] == "internal_error" and "the model fell over" not in str(failed.value)
        health = httpx.get(f"{url}/health").json()
        assert health["active_requests"] == 0  # the stream's request slot was given back
