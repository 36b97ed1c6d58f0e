"""Server settings: one dataclass, filled from command-line flags over ``EVOXTRAL_*`` environment variables."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields

from pydantic import TypeAdapter, ValidationError
from pydantic_extra_types.language_code import LanguageAlpha2

ENV_PREFIX = "EVOXTRAL_"
# The API key is read from the environment only: a command-line flag would show it in `ps` and shell history.
API_KEY_ENV = "EVOXTRAL_API_KEY"

# The validator Voxtral's tokenizer applies (mistral-common's TranscriptionRequest), so a code the model would
# reject is refused up front instead of failing a whole batch.
_LANGUAGE_CODE = TypeAdapter(LanguageAlpha2)


def language_code(value: str) -> str:
    """A lowercase ISO 639-1 code, or ValueError."""
    try:
        return str(_LANGUAGE_CODE.validate_python(value.strip()))
    except ValidationError as error:
        raise ValueError(f"language must be an ISO 639-1 code such as 'en', got {value!r}") from error


HELP = {
    "model": "base model name or folder, or a merged model folder",
    "adapter": "LoRA adapter folder applied on top of --model",
    "engine": "what decodes: transformers (in this process) or vllm (a vLLM OpenAI server behind this API)",
    "vllm_url": "engine vllm: the /v1 URL of a running vLLM server; unset: start one on --vllm-port from the vLLM "
    "environment, serving an export of --model/--adapter",
    "vllm_model": "engine vllm with --vllm-url: the model (or LoRA) name that server serves",
    "vllm_port": "engine vllm without --vllm-url: the port of the vLLM server started here (127.0.0.1)",
    "device": "torch device; auto: cuda when available, else cpu",
    "dtype": "torch dtype name (bfloat16, float32 ...); auto: the checkpoint's",
    "language": "ISO 639-1 code assumed when a request names none (the prompt the model was trained with); "
    "auto: the model detects it",
    "host": "interface to bind; loopback unless you mean to expose it",
    "port": "TCP port",
    "max_upload_mb": "largest accepted request body, in MB",
    "max_duration_s": "longest accepted audio, in seconds",
    "max_segment_s": "longest speech segment sent to the model, seconds",
    "merge_gap_s": "speech runs closer than this are transcribed together",
    "vad_threshold": "silero-vad speech probability threshold",
    "max_batch": "most segments transcribed in one model call",
    "max_wait_ms": "how long a batch waits to fill before it runs",
    "max_queue": "requests accepted at once; more get 503 + Retry-After",
    "max_new_tokens": "generation budget per segment",
    "diarizer": "speaker diarization backend: mfcc (offline default), resemblyzer, pyannote, or module:attribute",
    "max_speakers": "most speakers the diarizer will find when a request does not give the number",
    "routers": "extra routers to mount, comma-separated module:attribute",
    "fer_model": "facial emotion recognition: the ONNX export folder (recipes/fer_onnx.py); unset: POST /fer answers 503",
    "fer_model_file": "the ONNX file in that folder (model.onnx or model_quantized.onnx)",
    "fer_max_pixels": "largest image (or video frame) POST /fer decodes, in pixels; unset: the classifier's default",
    "fer_max_video_seconds": "longest video POST /fer samples, in seconds; unset: the classifier's default",
    "log_level": "uvicorn and application log level",
}


@dataclass
class ServeSettings:
    model: str = "evoxtral-tiny"
    adapter: str | None = None
    engine: str = "transformers"
    vllm_url: str | None = None
    vllm_model: str = "evoxtral"
    vllm_port: int = 8001
    device: str = "auto"
    dtype: str = "auto"
    language: str = "en"
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: float = 25.0
    max_duration_s: float = 3600.0
    max_segment_s: float = 30.0
    merge_gap_s: float = 1.0
    vad_threshold: float = 0.5
    max_batch: int = 8
    max_wait_ms: float = 20.0
    max_queue: int = 64
    max_new_tokens: int = 512
    diarizer: str = "mfcc"
    max_speakers: int = 8
    routers: str = ""
    fer_model: str | None = None
    fer_model_file: str = "model.onnx"
    fer_max_pixels: int | None = None
    fer_max_video_seconds: float | None = None
    log_level: str = "info"
    api_key: str | None = field(default=None, repr=False)  # never printed

    def __post_init__(self):
        positive = (
            "max_upload_mb", "max_duration_s", "max_segment_s", "max_batch", "max_queue", "max_new_tokens",
            "max_speakers",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.engine not in ("transformers", "vllm"):
            raise ValueError(f"engine must be transformers or vllm, got {self.engine!r}")
        if self.max_segment_s > 30:
            raise ValueError("max_segment_s is at most 30: Voxtral reads audio in 30 s chunks")
        if self.merge_gap_s < 0 or self.max_wait_ms < 0:
            raise ValueError("merge_gap_s and max_wait_ms cannot be negative")
        if self.language != "auto":
            self.language = language_code(self.language)
        if not 0 < self.vad_threshold < 1:
            raise ValueError(f"vad_threshold must be in (0, 1), got {self.vad_threshold}")

    @property
    def default_language(self) -> str | None:
        return None if self.language == "auto" else self.language

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def router_specs(self) -> list[str]:
        return [spec.strip() for spec in self.routers.split(",") if spec.strip()]

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServeSettings:
        """Defaults overridden by ``EVOXTRAL_<FIELD>`` variables (``EVOXTRAL_MAX_BATCH=16``)."""
        environ = os.environ if environ is None else environ
        values = {}
        for spec in fields(cls):
            raw = environ.get(ENV_PREFIX + spec.name.upper())
            if raw is not None and raw != "":
                values[spec.name] = _parse(spec, raw)
        return cls(**values)


def _value_type(spec) -> type:
    type_name = str(spec.type).split("|")[0].strip()
    return {"int": int, "float": float}.get(type_name, str)


def _parse(spec, raw: str):
    try:
        return _value_type(spec)(raw)
    except ValueError as error:
        raise ValueError(f"{ENV_PREFIX}{spec.name.upper()}={raw!r} is not a valid {spec.type}") from error


def build_parser(defaults: ServeSettings, prog: str = "python -m serve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Expressive tagged transcription API (native and OpenAI-compatible). Every flag also reads an "
            f"{ENV_PREFIX}<FLAG> environment variable; the API key only comes from {API_KEY_ENV}."
        ),
    )
    for spec in fields(ServeSettings):
        if spec.name not in HELP:
            continue
        default = getattr(defaults, spec.name)
        parser.add_argument(
            "--" + spec.name.replace("_", "-"),
            type=_value_type(spec),
            default=default,
            help=f"{HELP[spec.name]} (default: {default})",
        )
    return parser


def settings_from_cli(
    argv: list[str] | None = None, environ: dict[str, str] | None = None, prog: str = "python -m serve"
) -> ServeSettings:
    defaults = ServeSettings.from_env(environ)
    arguments = build_parser(defaults, prog).parse_args(argv)
    return ServeSettings(**vars(arguments), api_key=defaults.api_key)
