"""A local stand-in for the ElevenLabs text-to-speech endpoint, serving the offline backend's audio.

``POST /v1/text-to-speech/{voice_id}?output_format=...`` with the SDK's JSON body and ``xi-api-key`` header
answers with audio bytes in the requested format (mp3_*, wav_*, pcm_*), so the real SDK code path runs end
to end with no network. Faults can be injected: a queue of faults for the next requests, and/or a fault for
every text's first request. Kinds: "429" (with Retry-After), "500", "503", "401", "slow" (answers after
``slow_s``), "empty", "corrupt" (bytes that are not audio) and "silent" (valid audio of silence).

Run it alone with ``python -m evoxtral.data.generation.standin --port 8910 --fault 429 --fault 500``; point a config at
it with ``elevenlabs_base_url: http://127.0.0.1:8910`` and any ELEVENLABS_API_KEY.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf
from fastapi import FastAPI, Header, HTTPException, Request, Response

from evoxtral.data.audio import load_audio
from evoxtral.data.generation.backends import SynthesisError, SynthesisRequest
from evoxtral.data.generation.espeak import DEFAULT_VOICES, EspeakBackend
from evoxtral.data.generation.sounds import ESPEAK_SAMPLING_RATE

FAULT_KINDS = ("429", "500", "503", "401", "slow", "empty", "corrupt", "silent")


@dataclass
class FaultPlan:
    queue: list[str] = field(default_factory=list)  # faults for the next requests, in arrival order
    first_request_per_text: str | None = None  # a fault for the first request of every distinct text
    slow_s: float = 3.0
    latency_s: float = 0.0  # added to every answer, like a real service's generation time

    def __post_init__(self):
        for kind in [*self.queue, *([self.first_request_per_text] if self.first_request_per_text else [])]:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault {kind!r}; kinds: {FAULT_KINDS}")


@dataclass
class StandinStats:
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    served_texts: Counter = field(default_factory=Counter)  # successful (200, real audio) answers per text


def encode_audio(wav: bytes, output_format: str) -> tuple[bytes, str]:
    """The offline backend's WAV re-encoded as ElevenLabs would send it: (bytes, media type)."""
    codec, rate = output_format.split("_")[:2]
    audio = load_audio(wav, sampling_rate=int(rate))
    buffer = io.BytesIO()
    if codec == "pcm":
        return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes(), "application/octet-stream"
    if codec == "mp3":
        sf.write(buffer, audio, int(rate), format="MP3", subtype="MPEG_LAYER_III")
        return buffer.getvalue(), "audio/mpeg"
    if codec == "wav":
        sf.write(buffer, audio, int(rate), format="WAV", subtype="PCM_16")
        return buffer.getvalue(), "audio/wav"
    raise HTTPException(400, f"unsupported output_format {output_format!r}")


def create_app(backend: EspeakBackend, faults: FaultPlan | None = None) -> FastAPI:
    """The stand-in app; ``app.state.stats`` counts what it saw and answered."""
    faults = faults or FaultPlan()
    queue = deque(faults.queue)
    seen_texts: set[str] = set()
    lock = threading.Lock()
    app = FastAPI(title="ElevenLabs text-to-speech stand-in")
    app.state.stats = stats = StandinStats()

    def next_fault(text: str) -> str | None:
        with lock:
            stats.requests += 1
            first = text not in seen_texts
            seen_texts.add(text)
            if queue:
                return queue.popleft()
            return faults.first_request_per_text if first else None

    @app.post("/v1/text-to-speech/{voice_id}")
    async def text_to_speech(
        voice_id: str,
        request: Request,
        output_format: str = "mp3_44100_128",
        xi_api_key: str | None = Header(default=None),
    ):
        body = await request.json()
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            stats.statuses[422] += 1
            raise HTTPException(422, "text is required")
        fault = "401" if not xi_api_key else next_fault(text)
        if fault:
            stats.faults[fault] += 1
        if fault in ("429", "500", "503", "401"):
            stats.statuses[int(fault)] += 1
            headers = {"Retry-After": "0"} if fault == "429" else {}
            return Response(f'{{"detail": "injected {fault}"}}', int(fault), headers, "application/json")
        await asyncio.sleep(faults.slow_s if fault == "slow" else faults.latency_s)
        if fault == "empty":
            payload, media = b"", "audio/mpeg"
        elif fault == "corrupt":
            payload, media = b"ID3 this is not audio" * 50, "audio/mpeg"
        else:
            voice = DEFAULT_VOICES[sum(voice_id.encode()) % len(DEFAULT_VOICES)]
            try:
                wav = await asyncio.to_thread(backend.synthesize, SynthesisRequest(text, voice))
            except SynthesisError as error:
                stats.statuses[400] += 1
                raise HTTPException(400, str(error)) from error
            if fault == "silent":
                buffer = io.BytesIO()
                sf.write(buffer, np.zeros(ESPEAK_SAMPLING_RATE, dtype=np.float32), ESPEAK_SAMPLING_RATE, format="WAV")
                wav = buffer.getvalue()
            payload, media = await asyncio.to_thread(encode_audio, wav, output_format)
            if fault is None:
                with lock:
                    stats.served_texts[text] += 1
        stats.statuses[200] += 1
        return Response(payload, 200, media_type=media)

    @app.get("/stats")
    def read_stats():
        return {
            "requests": stats.requests,
            "statuses": dict(stats.statuses),
            "faults": dict(stats.faults),
            "served_texts": len(stats.served_texts),
            "served_twice": sum(1 for n in stats.served_texts.values() if n > 1),
        }

    return app


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, port: int = 0):
    """Run the app on 127.0.0.1 in a background thread; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the stand-in server did not start")
        time.sleep(0.02)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8910)
    parser.add_argument("--fault", action="append", default=[], choices=FAULT_KINDS, help="queue a fault (repeatable)")
    parser.add_argument("--first-request-fault", choices=FAULT_KINDS, default=None)
    parser.add_argument("--slow-s", type=float, default=3.0)
    parser.add_argument("--latency-s", type=float, default=0.0)
    parser.add_argument("--sounds-dir", default="outputs/cache/sounds")
    args = parser.parse_args()
    import uvicorn

    app = create_app(
        EspeakBackend(sounds_dir=args.sounds_dir),
        FaultPlan(args.fault, args.first_request_fault, args.slow_s, args.latency_s),
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info")


if __name__ == "__main__":
    main()
