"""Shared fixtures: the tiny offline Voxtral (built once per session into a private cache), a small tagged-speech
dataset made by data_gen's offline pipeline, and synthetic audio."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import threading
import time

# Before anything imports huggingface_hub, which reads these once.
for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(variable, "1")
os.environ.setdefault("WANDB_MODE", "offline")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402

SAMPLING_RATE = 16_000


@pytest.fixture(scope="session")
def evoxtral_cache(tmp_path_factory):
    """A private EVOXTRAL_CACHE for the session, inherited by subprocesses the tests start."""
    cache = tmp_path_factory.mktemp("evoxtral-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EVOXTRAL_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session")
def tiny_model_dir(evoxtral_cache):
    from evoxtral.model.tiny import tiny_voxtral_path

    return tiny_voxtral_path()


@pytest.fixture(scope="session")
def tiny_model_and_processor(tiny_model_dir):
    from evoxtral.model.loading import load_model_and_processor

    return load_model_and_processor("evoxtral-tiny")


@pytest.fixture(scope="session")
def tiny_processor(tiny_model_and_processor):
    return tiny_model_and_processor[1]


@pytest.fixture(scope="session")
def tiny_sft_dataset(tmp_path_factory):
    """A `save_to_disk` DatasetDict of espeak-ng clips (train/validation/test) in the data_gen schema."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng (make system-deps)")
    from evoxtral.configs import DataGenArguments
    from evoxtral.data.generation import pipeline

    arguments = DataGenArguments(
        output_dir=str(tmp_path_factory.mktemp("sft-data")),
        num_clips=40,
        tags=["sighs", "laughs", "whispers", "pause", "sad", "shouts"],
        min_support=1,
        seed=0,
    )
    return pipeline.run(arguments).dataset_path


def noise_clip(seconds: float, seed: int = 0) -> np.ndarray:
    """16 kHz float32 noise quantised to 16-bit steps, so a WAV round trip gives it back exactly."""
    samples = np.random.default_rng(seed).uniform(-0.3, 0.3, int(seconds * SAMPLING_RATE))
    return (np.round(samples * 32768) / 32768).astype(np.float32)


def tone(seconds: float, frequency: float, sampling_rate: int = SAMPLING_RATE, channels: int = 1) -> np.ndarray:
    time = np.arange(int(seconds * sampling_rate)) / sampling_rate
    wave = (0.3 * np.sin(2 * np.pi * frequency * time)).astype(np.float32)
    return np.repeat(wave[:, None], channels, axis=1) if channels > 1 else wave


def encode(samples: np.ndarray, sampling_rate: int, format: str = "WAV", subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sampling_rate, format=format, subtype=subtype)
    return buffer.getvalue()


@contextlib.contextmanager
def live_server(app):
    """The app under uvicorn on a free loopback port, in a background thread."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=30))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
