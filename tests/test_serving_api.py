"""The transcription API over HTTP: endpoints, response formats, bad input, auth, the bounded queue, an OpenAI
client against a live server on loopback, and a load test.

Most tests use a scripted transcriber whose output carries tags, so what the API does with tags (subtitles,
emotions) is checked exactly; the model-backed tests at the end run the built-in tiny Voxtral.
"""

import asyncio
import logging
import threading
from dataclasses import asdict
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from conftest import encode, live_server, tone
from fastapi import APIRouter
from fastapi.testclient import TestClient

from evoxtral.scoring.tags import segment_emotion
from evoxtral.serving import ServeSettings, create_app
from evoxtral.serving.transcriber import model_transcriber

# Two phrases spoken by espeak-ng ("Hello there, I was thinking we could try that new place downtown." and
# "That sounds wonderful."), 1.6 s apart: 7.47 s, 22.05 kHz mono Ogg Vorbis.
SPEECH = Path(__file__).parent / "data" / "speech.ogg"
SPEECH_SECONDS = 7.466
TRANSCRIPTIONS = "/v1/audio/transcriptions"


def scripted_transcriber(clips, options):
    """Tagged text that says how long each clip was, so the test can tell segments apart."""
    return [f"[laughs] Clip of {len(clip) / 16000:.1f} SECONDS" for clip in clips]


@pytest.fixture(scope="module")
def speech():
    audio, rate = sf.read(SPEECH, dtype="float32")
    return audio, rate


@pytest.fixture(scope="module")
def speech_wav(speech):
    return encode(*speech, "WAV", "PCM_16")


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ServeSettings(max_duration_s=60), transcriber=scripted_transcriber)) as test_client:
        yield test_client


def assert_error(response, status: int, code: str | None = None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error


# --- Endpoints and formats --------------------------------------------------------------------------------------


def test_health_reports_the_model_and_queue(client):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["model"] == "evoxtral-tiny"
    assert body["active_requests"] == 0 and body["max_queue"] == 64


def test_native_transcribe_gives_text_tags_timed_segments_and_emotions(client, speech_wav):
    response = client.post("/transcribe", files={"file": ("speech.wav", speech_wav, "audio/wav")})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["duration"] == pytest.approx(SPEECH_SECONDS, abs=0.01)
    segments = result["segments"]
    # The two phrases, found by silero-vad, in order, inside the clip.
    assert len(segments) == 2
    assert segments[0]["start"] < 0.5 < segments[0]["end"] < 4.6 < segments[1]["start"] < 5.9
    assert segments[1]["end"] <= SPEECH_SECONDS
    first_length = segments[0]["end"] - segments[0]["start"]
    assert segments[0]["text"] == f"[laughs] Clip of {first_length:.1f} SECONDS"
    assert segments[0]["plain_text"] == f"Clip of {first_length:.1f} seconds"
    assert segments[0]["tags"] == ["laughs"]
    assert segments[0]["emotion"] == asdict(segment_emotion("[laughs]"))  # the vocabulary's table, not our own
    assert result["text"] == " ".join(segment["text"] for segment in segments)
    assert [tag["name"] for tag in result["tags"]] == ["laughs", "laughs"]
    assert result["emotion"]["evidence"] == ["laughs", "laughs"]


@pytest.mark.parametrize(
    "fmt, subtype, rate, channels",
    [
        ("WAV", "PCM_16", 8000, 2),
        ("FLAC", "PCM_24", 44100, 1),
        ("OGG", "VORBIS", 22050, 2),
        ("MP3", "MPEG_LAYER_III", 48000, 1),
    ],
)
def test_common_formats_rates_and_channel_counts_are_read(client, speech, fmt, subtype, rate, channels):
    import soxr

    audio = soxr.resample(speech[0], speech[1], rate)
    data = encode(np.stack([audio] * channels, axis=1) if channels > 1 else audio, rate, fmt, subtype)
    response = client.post("/transcribe", files={"file": (f"speech.{fmt.lower()}", data)})
    assert response.status_code == 200, response.text
    result = response.json()
    # mp3 encoders pad the stream by a frame or so
    assert result["duration"] == pytest.approx(SPEECH_SECONDS, abs=0.1)
    assert len(result["segments"]) == 2


def test_long_audio_is_cut_into_ordered_segments_of_at_most_30_s(client, speech):
    audio, rate = speech
    phrase = audio[: int(4.1 * rate)]
    gap = np.zeros(int(0.3 * rate), np.float32)  # pauses shorter than merge_gap_s: phrases join up to 30 s
    long_audio = np.concatenate([np.concatenate([phrase, gap])] * 12)  # about 53 s of near-continuous speech
    response = client.post("/transcribe", files={"file": ("long.flac", encode(long_audio, rate, "FLAC"))})
    assert response.status_code == 200, response.text
    segments = response.json()["segments"]
    lengths = [segment["end"] - segment["start"] for segment in segments]
    assert len(segments) >= 2 and max(lengths) > 20.0 and all(0 < length <= 30.0 for length in lengths)
    assert all(a["end"] <= b["start"] for a, b in zip(segments, segments[1:]))
    assert segments[0]["start"] < 0.5 and segments[-1]["end"] > len(long_audio) / rate - 1.0
    assert [segment["text"] for segment in segments] == [
        f"[laughs] Clip of {length:.1f} SECONDS" for length in lengths
    ]


def test_audio_without_speech_is_answered_with_no_segments(client):
    response = client.post(TRANSCRIPTIONS, files={"file": ("beep.wav", encode(tone(3.0, 440.0), 16000))})
    assert response.status_code == 200, response.text
    assert response.json() == {"text": ""}
    assert (
        client.post("/transcribe", files={"file": ("beep.wav", encode(tone(3.0, 440.0), 16000))}).json()["segments"]
        == []
    )


@pytest.mark.parametrize("response_format", ["json", "text", "srt", "vtt", "verbose_json"])
def test_openai_route_answers_every_response_format(client, speech_wav, response_format):
    response = client.post(
        TRANSCRIPTIONS,
        files={"file": ("speech.wav", speech_wav)},
        data={"model": "whisper-1", "response_format": response_format},
    )
    assert response.status_code == 200, response.text
    if response_format == "json":
        assert response.json()["text"].startswith("[laughs] Clip of ")
    elif response_format == "text":
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text.count("[laughs]") == 2
    elif response_format == "srt":
        cues = response.text.strip().split("\n\n")
        assert [cue.split("\n")[0] for cue in cues] == ["1", "2"]
        assert all(" --> " in cue.split("\n")[1] and "[laughs]" in cue for cue in cues)
        assert cues[0].split("\n")[1].startswith("00:00:00,")
    elif response_format == "vtt":
        assert response.headers["content-type"].startswith("text/vtt")
        assert response.text.startswith("WEBVTT\n\n00:00:00.")
        assert response.text.count("[laughs]") == 2
    else:
        body = response.json()
        assert body["task"] == "transcribe" and body["duration"] == pytest.approx(SPEECH_SECONDS, abs=0.01)
        assert [segment["id"] for segment in body["segments"]] == [0, 1]
        assert body["segments"][1]["emotion"] == asdict(segment_emotion("[laughs]"))


def test_openapi_docs_describe_both_transcription_routes(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/transcribe", TRANSCRIPTIONS} <= set(paths)
    form = paths[TRANSCRIPTIONS]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert form["schema"]["$ref"].endswith("Body_transcribe_openai_v1_audio_transcriptions_post")


def test_optional_routers_are_mounted_and_share_the_api_key(speech_wav):
    router = APIRouter()

    @router.get("/extra")
    async def extra():
        return {"mounted": True}

    settings = ServeSettings(api_key="k")
    with TestClient(create_app(settings, transcriber=scripted_transcriber, routers=[router])) as test_client:
        assert_error(test_client.get("/extra"), 401)
        assert test_client.get("/extra", headers={"Authorization": "Bearer k"}).json() == {"mounted": True}


def test_routers_named_in_settings_are_imported_and_mounted(tmp_path, monkeypatch):
    (tmp_path / "extra_routes.py").write_text(
        "from fastapi import APIRouter\nrouter = APIRouter()\n\n"
        "@router.get('/fer/ping')\nasync def ping():\n    return {'pong': True}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = ServeSettings.from_env({"EVOXTRAL_ROUTERS": "extra_routes:router"})
    with TestClient(create_app(settings, transcriber=scripted_transcriber)) as test_client:
        assert test_client.get("/fer/ping").json() == {"pong": True}


# --- Bad input: always a 4xx with a JSON error, and the server keeps serving -----------------------------------


def bad_inputs(speech):
    audio, rate = speech
    wav = encode(audio, rate, "WAV", "PCM_16")
    flac = encode(audio, rate, "FLAC", "PCM_16")
    return {
        "empty file": ({"file": ("a.wav", b"")}, {}, 400, "empty_file"),
        "not audio": ({"file": ("a.wav", b"this is a text file, not a recording " * 20)}, {}, 400, "invalid_audio"),
        "truncated flac": ({"file": ("a.flac", flac[: len(flac) // 2])}, {}, 400, "invalid_audio"),
        "truncated header": ({"file": ("a.wav", wav[:30])}, {}, 400, "invalid_audio"),
        "unsupported m4a": (
            {"file": ("a.m4a", b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A isomiso2" + bytes(4000))},
            {},
            415,
            "unsupported_format",
        ),
        "zero-length audio": ({"file": ("a.wav", encode(np.zeros(0, np.float32), 16000))}, {}, 400, "invalid_audio"),
        "silent audio": (
            {"file": ("a.wav", encode(np.zeros(32000, np.float32), 16000, "WAV"))},
            {},
            400,
            "silent_audio",
        ),
        "too long": ({"file": ("a.wav", encode(np.tile(audio, 9), rate, "WAV"))}, {}, 400, "audio_too_long"),
        "missing file": (None, {"model": "whisper-1"}, 400, "missing_field"),
        "file as text field": (None, {"file": "speech.wav"}, 400, None),
        "bad response_format": ({"file": ("a.wav", wav)}, {"response_format": "docx"}, 400, "invalid_value"),
        "temperature not a number": ({"file": ("a.wav", wav)}, {"temperature": "hot"}, 400, "invalid_value"),
        "temperature out of range": ({"file": ("a.wav", wav)}, {"temperature": "2"}, 400, "invalid_value"),
        "bad language": ({"file": ("a.wav", wav)}, {"language": "english!"}, 400, "invalid_language"),
        "word timestamps": ({"file": ("a.wav", wav)}, {"timestamp_granularities[]": "word"}, 400, "unsupported_value"),
        "bad num_speakers": ({"file": ("a.wav", wav)}, {"num_speakers": "0"}, 400, "invalid_value"),
    }


BAD_INPUT_NAMES = [
    "empty file", "not audio", "truncated flac", "truncated header", "unsupported m4a", "zero-length audio",
    "silent audio", "too long", "missing file", "file as text field", "bad response_format",
    "temperature not a number", "temperature out of range", "bad language", "word timestamps", "bad num_speakers",
]  # fmt: skip


@pytest.mark.parametrize("name", BAD_INPUT_NAMES)
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(client, speech, name):
    files, data, status, code = bad_inputs(speech)[name]
    response = client.post(TRANSCRIPTIONS, files=files, data=data)
    assert_error(response, status, code)
    assert client.get("/health").status_code == 200


def test_json_body_instead_of_a_form_is_a_4xx(client):
    assert_error(client.post(TRANSCRIPTIONS, json={"file": "speech.wav"}), 400, "missing_field")
    assert_error(client.post("/transcribe", content=b"garbage", headers={"content-type": "multipart/form-data"}), 400)


def test_native_route_checks_its_fields_too(client, speech_wav):
    assert_error(client.post("/transcribe", data={"language": "en"}), 400, "missing_field")
    assert_error(client.post("/transcribe", files={"file": ("a.wav", speech_wav)}, data={"language": "xx"}), 400)


def test_oversize_upload_is_refused_from_its_declared_length():
    with TestClient(create_app(ServeSettings(max_upload_mb=0.5), transcriber=scripted_transcriber)) as test_client:
        response = test_client.post(TRANSCRIPTIONS, files={"file": ("a.wav", bytes(600_000))})
        assert_error(response, 413, "upload_too_large")
        assert test_client.get("/health").status_code == 200


def test_oversize_upload_is_refused_while_streaming_not_after(speech_wav):
    """A body with no declared length: the server stops reading at the first chunk past the limit."""
    limit = 256 * 1024
    chunk = 16 * 1024
    app = create_app(ServeSettings(max_upload_mb=limit / 1024 / 1024), transcriber=scripted_transcriber)
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    pulled = 0
    sent = []

    async def receive():
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": head if pulled == 1 else bytes(chunk), "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": TRANSCRIPTIONS, "raw_path": TRANSCRIPTIONS.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"multipart/form-data; boundary=b"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    with TestClient(app) as test_client:
        test_client.portal.call(app, scope, receive, send)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert b"upload_too_large" in sent[1]["body"]
    assert pulled <= limit // chunk + 2  # never read on to the end of an endless body


def test_uploads_live_in_a_private_directory_that_is_emptied_and_removed(speech_wav):
    app = create_app(ServeSettings(), transcriber=scripted_transcriber)
    with TestClient(app) as test_client:
        upload_dir = app.state.upload_dir
        assert upload_dir.is_dir() and upload_dir.stat().st_mode & 0o077 == 0
        assert test_client.post("/transcribe", files={"file": ("a.wav", speech_wav)}).status_code == 200
        assert test_client.post("/transcribe", files={"file": ("a.wav", b"junk" * 100)}).status_code == 400
        assert list(upload_dir.iterdir()) == []
    assert not upload_dir.exists()


def test_engine_vllm_answers_502_when_its_server_is_down_and_still_checks_uploads(speech_wav, caplog):
    """--engine vllm with --vllm-url: nothing listens there, so a good clip is the engine's fault (502, no internals in
    the message, the cause in the log) while a bad upload is still the client's (400, refused before vLLM)."""
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    settings = ServeSettings(engine="vllm", vllm_url=url, max_duration_s=60)
    with TestClient(create_app(settings)) as client:
        down = client.post(TRANSCRIPTIONS, files={"file": ("speech.wav", speech_wav, "audio/wav")})
        bad = client.post(TRANSCRIPTIONS, files={"file": ("a.wav", b"this is a text file, not a recording " * 20)})
        assert client.get("/health").json()["status"] == "ok"
    assert_error(down, 502, "engine_unavailable")
    assert url not in down.json()["error"]["message"] and url in caplog.text
    assert_error(bad, 400, "invalid_audio")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="vLLM's GPU attention takes heads of 16")
def test_engine_vllm_refuses_at_start_up_a_model_vllms_cpu_build_cannot_run(tiny_model_dir, tmp_path, monkeypatch):
    """evoxtral-tiny's heads of 16 fail in vLLM's CPU attention: a clear error before vLLM starts, no export left."""
    import sys
    import tempfile

    from evoxtral.model.vllm_runner import VllmUnavailableError

    monkeypatch.setenv("EVOXTRAL_VLLM_PYTHON", sys.executable)  # a vLLM environment "exists"; it is never started
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(VllmUnavailableError, match="this model's is 16"):
        with TestClient(create_app(ServeSettings(engine="vllm", model="evoxtral-tiny"))):
            pass
    assert not list(tmp_path.glob("evoxtral-vllm-export-*"))


# --- Security ---------------------------------------------------------------------------------------------------


def test_api_key_is_required_when_configured_and_never_logged(speech_wav, caplog):
    secret = "sk-test-0123456789"
    caplog.set_level(logging.DEBUG)
    app = create_app(ServeSettings(api_key=secret), transcriber=scripted_transcriber)
    with TestClient(app) as test_client:
        files = {"file": ("a.wav", speech_wav)}
        missing = test_client.post(TRANSCRIPTIONS, files=files)
        assert_error(missing, 401, "invalid_api_key")
        assert missing.headers["www-authenticate"] == "Bearer"
        assert_error(test_client.post(TRANSCRIPTIONS, files=files, headers={"Authorization": "Bearer nope"}), 401)
        assert_error(test_client.post("/transcribe", files=files, headers={"Authorization": secret}), 401)
        authorised = test_client.post(TRANSCRIPTIONS, files=files, headers={"Authorization": f"Bearer {secret}"})
        assert authorised.status_code == 200
        assert test_client.get("/health").status_code == 200  # liveness and docs stay open
        assert test_client.get("/openapi.json").json()["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "API key required" in caplog.text
    assert secret not in caplog.text


def test_default_bind_is_loopback():
    assert ServeSettings().host == "127.0.0.1"
    assert ServeSettings.from_env({}).host == "127.0.0.1"


# --- Load -------------------------------------------------------------------------------------------------------


def test_full_queue_answers_503_with_retry_after_and_recovers(speech_wav):
    entered = threading.Event()
    release = threading.Event()

    def blocking_transcriber(clips, options):
        entered.set()
        assert release.wait(60)
        return scripted_transcriber(clips, options)

    app = create_app(ServeSettings(max_queue=1), transcriber=blocking_transcriber)
    with live_server(app) as url:
        results = {}
        first = threading.Thread(
            target=lambda: results.update(
                first=httpx.post(f"{url}/transcribe", files={"file": ("a.wav", speech_wav)}, timeout=60)
            )
        )
        first.start()
        assert entered.wait(60)
        refused = httpx.post(f"{url}/transcribe", files={"file": ("a.wav", speech_wav)}, timeout=60)
        assert_error(refused, 503, "queue_full")
        assert int(refused.headers["retry-after"]) >= 1
        assert httpx.get(f"{url}/health", timeout=10).json()["active_requests"] == 1
        release.set()
        first.join(60)
        assert results["first"].status_code == 200
        assert httpx.post(f"{url}/transcribe", files={"file": ("a.wav", speech_wav)}, timeout=60).status_code == 200


# --- The tiny model behind the API: start-up loading, an OpenAI client on loopback, a load test ----------------


@pytest.fixture(scope="module")
def tiny_transcriber(tiny_model_and_processor):
    return model_transcriber(*tiny_model_and_processor, max_new_tokens=6)


def test_the_app_loads_the_tiny_model_at_start_up_and_transcribes(tiny_model_dir, speech_wav):
    settings = ServeSettings(max_new_tokens=6)
    assert settings.model == "evoxtral-tiny"
    with TestClient(create_app(settings)) as test_client:
        assert test_client.get("/health").json()["model"] == "evoxtral-tiny"
        response = test_client.post("/transcribe", files={"file": ("speech.wav", speech_wav)})
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["language"] == "en" and len(result["segments"]) == 2
        assert all(isinstance(segment["text"], str) for segment in result["segments"])
        assert test_client.get("/health").json()["segments_transcribed"] == 2


def test_openai_client_works_unchanged_against_a_live_server(tiny_transcriber, speech, speech_wav):
    import openai

    audio, rate = speech
    phrase = ("phrase.wav", encode(audio[: int(4.2 * rate)], rate, "WAV", "PCM_16"), "audio/wav")  # one segment
    secret = "sk-local-test"
    app = create_app(ServeSettings(api_key=secret), transcriber=tiny_transcriber)
    with live_server(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
        transcription = client.audio.transcriptions.create(model="whisper-1", file=phrase)
        assert isinstance(transcription.text, str)
        verbose = client.audio.transcriptions.create(
            model="whisper-1",
            file=("speech.wav", speech_wav, "audio/wav"),
            response_format="verbose_json",
            language="fr",
            temperature=0.5,
        )
        assert verbose.language == "fr" and verbose.duration == pytest.approx(SPEECH_SECONDS, abs=0.01)
        assert [segment.id for segment in verbose.segments] == [0, 1]
        assert verbose.segments[0].start < verbose.segments[0].end <= verbose.segments[1].start
        assert verbose.segments[1].temperature == 0.5
        subtitles = client.audio.transcriptions.create(model="whisper-1", file=phrase, response_format="srt")
        assert subtitles.startswith("1\n00:00:00,") and "\n2\n" not in subtitles
        with pytest.raises(openai.BadRequestError) as bad:
            client.audio.transcriptions.create(model="whisper-1", file=("notes.wav", b"not audio at all" * 10))
        assert bad.value.code == "invalid_audio" and "'notes.wav' is not a readable audio file" in bad.value.message
        wrong_key = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong_key.audio.transcriptions.create(model="whisper-1", file=phrase)


def test_two_hundred_concurrent_requests_all_answered_without_5xx(tiny_transcriber, speech):
    """200 requests at once on loopback, one in four good: every good one transcribed, every bad one a 4xx."""
    audio, rate = speech
    good = encode(audio[: int(4.2 * rate)], rate, "WAV", "PCM_16")  # the first phrase: one segment
    bad = [b"", b"plain text, not audio" * 5, good[:40], encode(np.zeros(8000, np.float32), 16000)]
    app = create_app(ServeSettings(max_queue=256, max_batch=16, max_wait_ms=50), transcriber=tiny_transcriber)

    async def hammer(url):
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:

            async def one(index):
                body = good if index % 4 == 0 else bad[index % len(bad)]
                if index % 3 == 0:
                    return await client.post("/transcribe", files={"file": ("a.wav", body)})
                return await client.post(TRANSCRIPTIONS, files={"file": ("a.wav", body)}, data={"model": "m"})

            return await asyncio.gather(*(one(index) for index in range(200)))

    with live_server(app) as url:
        answers = asyncio.run(hammer(url))
        health = httpx.get(f"{url}/health").json()
    statuses = [response.status_code for response in answers]
    assert all(status < 500 for status in statuses), sorted(set(statuses))
    good_answers = answers[::4]
    assert len(good_answers) == 50 and all(response.status_code == 200 for response in good_answers)
    assert all(isinstance(response.json()["text"], str) for response in good_answers)
    assert all(400 <= response.status_code < 500 for index, response in enumerate(answers) if index % 4)
    assert health["segments_transcribed"] == 50
    assert health["batches_run"] < 50  # requests shared model calls
    assert health["active_requests"] == 0
