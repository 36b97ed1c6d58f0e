"""`serve --engine vllm`: our API (tags, segments, emotions, SRT/VTT, speakers, auth, 4xx) in front of vLLM's
OpenAI server, which does the decoding.

Why this shape: a team that outgrows one process runs vLLM as the model server (continuous batching across every
client, paged KV cache, tensor parallelism, LoRA adapters swapped per request) and scales it on GPUs on its own,
while this API stays a thin CPU service in front of it. vLLM's own `/v1/audio/transcriptions` for Voxtral answers
text, json and verbose_json only, with no timed segments, subtitles, tag-derived emotions or speakers: those are
this API's, so clients keep one endpoint whichever engine decodes.

Each speech segment our VAD cuts is sent to vLLM as one transcription request (a WAV upload), all segments of a
batch at once so that vLLM batches them with everyone else's. ``--vllm-url`` names a running vLLM server
(``http://host:8001/v1``); without it the server starts one itself from the vLLM environment on ``--vllm-port``,
serving an export of ``--model``/``--adapter`` (`evoxtral.model.vllm_export`, made at start-up unless ``--model``
already is an export), and stops it on exit.
"""

from __future__ import annotations

import atexit
import io
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
import torch

from evoxtral.serving.errors import APIError
from evoxtral.serving.settings import ServeSettings
from evoxtral.serving.transcriber import DecodingOptions, SegmentTranscript, Transcriber
from evoxtral.utils.logging import get_logger

logger = get_logger(__name__)

LORA_NAME = "evoxtral"  # what the spawned vLLM server calls the adapter (the `model` field of each request)
BASE_NAME = "evoxtral-base"
STARTUP_TIMEOUT_S = 900  # a CPU start-up is ~1 min; a 3B model on a GPU loads in well under that
REQUEST_TIMEOUT_S = 300


# A 502 says the engine behind this API failed, not the request; the details go to the server log.
ENGINE_UNAVAILABLE = "The decoding engine (vLLM) behind this server failed to answer; the error has been logged."


class VllmServerError(RuntimeError):
    """vLLM did not start, or answered a request with an error; the message carries vLLM's own."""


def wav_bytes(clip: np.ndarray, sampling_rate: int = 16_000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(clip, dtype=np.float32), sampling_rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def vllm_transcriber(
    base_url: str,
    model: str,
    *,
    api_key: str | None = None,
    max_parallel: int = 16,
    max_new_tokens: int | None = None,
    on_close: Callable[[], None] | None = None,
) -> Transcriber:
    """A Transcriber that sends each clip to a vLLM OpenAI server's ``/audio/transcriptions``; its ``close()`` ends
    the HTTP client (and ``on_close``, e.g. stopping the vLLM server this process started)."""
    client = httpx.Client(
        base_url=base_url.rstrip("/"),
        timeout=REQUEST_TIMEOUT_S,
        headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
    )
    pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="vllm-request")

    def one(clip: np.ndarray, decoding: DecodingOptions) -> SegmentTranscript:
        data = {"model": model, "response_format": "json", "temperature": str(decoding.temperature)}
        if max_new_tokens:  # the same generation budget per segment as the transformers engine
            data["max_completion_tokens"] = str(max_new_tokens)
        if decoding.language:
            data["language"] = decoding.language
        try:
            response = client.post(
                "/audio/transcriptions", data=data, files={"file": ("segment.wav", wav_bytes(clip))}
            )
        except httpx.HTTPError as error:
            logger.error("the vLLM server at %s did not answer: %r", base_url, error)
            raise APIError(502, "engine_unavailable", ENGINE_UNAVAILABLE) from error
        if response.status_code != 200:
            # Our checks ran before: what vLLM refuses is the deployment's fault (a model name it does not serve ...).
            logger.error("vLLM answered %d: %s", response.status_code, response.text[:500])
            raise APIError(502, "engine_error", ENGINE_UNAVAILABLE)
        return SegmentTranscript(response.json()["text"].strip())

    def transcribe_clips(clips: Sequence[np.ndarray], decoding: DecodingOptions) -> list[SegmentTranscript]:
        return list(pool.map(lambda clip: one(clip, decoding), clips))

    def close() -> None:
        pool.shutdown(wait=False, cancel_futures=True)
        client.close()
        if on_close is not None:
            on_close()

    transcribe_clips.close = close
    return transcribe_clips


def vllm_server_command(
    python: str,
    model_dir: str | Path,
    port: int,
    *,
    lora_dir: str | None = None,
    max_lora_rank: int | None = None,
    dtype: str = "auto",
    enforce_eager: bool = False,
) -> list[str]:
    """The vLLM OpenAI server for an export (``python -m vllm.entrypoints.openai.api_server``: the CPU build's
    `vllm` console script fails to start). ``dtype`` auto is vLLM's choice, which serves a float32 checkpoint in
    16 bits: name the dtype to decode exactly as transformers does."""
    command = [
        python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir), "--served-model-name",
        BASE_NAME, "--tokenizer-mode", "mistral", "--config-format", "mistral", "--load-format", "mistral",
        "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype,
    ]  # fmt: skip
    if enforce_eager:  # on CPU, compiling the graphs costs more start-up than it saves
        command.append("--enforce-eager")
    if lora_dir:
        command += ["--enable-lora", "--lora-modules", f"{LORA_NAME}={lora_dir}"]
        command += ["--max-lora-rank", str(max_lora_rank)]
    return command


def start_vllm_server(command: list[str], base_url: str, log_path: Path) -> subprocess.Popen:
    """Start vLLM, wait until it answers /health, stop it when this process exits."""
    from evoxtral.model.vllm_runner import vllm_environment

    log = log_path.open("w")
    process = subprocess.Popen(command, env=vllm_environment(), stdout=log, stderr=subprocess.STDOUT)
    atexit.register(stop_vllm_server, process)
    health = base_url.removesuffix("/v1") + "/health"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise VllmServerError(f"vLLM exited with status {process.returncode}; its log: {log_path}")
        try:
            if httpx.get(health, timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(1)
    stop_vllm_server(process)
    raise VllmServerError(f"vLLM did not answer {health} within {STARTUP_TIMEOUT_S} s; its log: {log_path}")


def stop_vllm_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def load_vllm_transcriber(settings: ServeSettings) -> Transcriber:
    """The Transcriber ``--engine vllm`` serves with: a running server (``--vllm-url``), or one started here."""
    from evoxtral.model.vllm_export import MANIFEST_FILE, export_for_vllm
    from evoxtral.model.vllm_runner import check_runs_on_this_machine, find_vllm_python

    budget = {"max_parallel": settings.max_batch, "max_new_tokens": settings.max_new_tokens}
    if settings.vllm_url:
        logger.info("decoding with the vLLM server at %s (model %s)", settings.vllm_url, settings.vllm_model)
        return vllm_transcriber(settings.vllm_url, settings.vllm_model, **budget)
    python = find_vllm_python()
    if python is None:
        raise VllmServerError("--engine vllm needs --vllm-url or the vLLM environment (make vllm-venv)")
    source, scratch = Path(settings.model), None
    if (source / MANIFEST_FILE).is_file() and settings.adapter is None:
        manifest = json.loads((source / MANIFEST_FILE).read_text())
        model_dir, lora_dir, rank = source, manifest["lora_dir"], manifest["max_lora_rank"]
    else:
        scratch = Path(tempfile.mkdtemp(prefix="evoxtral-vllm-export-"))
        try:
            export = export_for_vllm(settings.model, scratch, adapter=settings.adapter, check=lambda *_: None)
        except Exception:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        model_dir, lora_dir, rank = export.model_dir, export.lora_dir and str(export.lora_dir), export.lora_rank
    base_url = f"http://127.0.0.1:{settings.vllm_port}/v1"
    log_path = Path(tempfile.gettempdir()) / f"evoxtral-vllm-{settings.vllm_port}.log"
    logger.info("starting vLLM on %s (LoRA: %s); its log: %s", model_dir, lora_dir or "none", log_path)
    command = vllm_server_command(
        python, model_dir, settings.vllm_port, lora_dir=lora_dir, max_lora_rank=rank, dtype=settings.dtype,
        enforce_eager=settings.device == "cpu" or (settings.device == "auto" and not torch.cuda.is_available()),
    )  # fmt: skip

    def remove_export() -> None:  # the export made at start-up
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    try:
        check_runs_on_this_machine(model_dir)
        process = start_vllm_server(command, base_url, log_path)
    except Exception:
        remove_export()
        raise

    def stop() -> None:
        stop_vllm_server(process)
        remove_export()

    return vllm_transcriber(base_url, LORA_NAME if lora_dir else BASE_NAME, on_close=stop, **budget)
