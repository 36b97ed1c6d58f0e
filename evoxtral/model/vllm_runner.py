"""Decoding with vLLM from the training environment: greedy transcripts and k samples per clip from an export
(`evoxtral.model.vllm_export`), through `evoxtral.model.vllm_worker` in the vLLM environment.

vLLM's CPU build pins transformers < 5.20, which the training stack cannot use, so vLLM runs in its own virtualenv
(`make vllm-venv` builds `.venv-vllm`; ``EVOXTRAL_VLLM_PYTHON`` names another interpreter, e.g. the one of a GPU
machine's vLLM). Each call starts one engine (tens of seconds on CPU, the model load and warm-up on a GPU) and runs
every clip through it: give it whole rounds of clips, not one batch at a time. The engine's process exits at the
end, which also gives the GPU's memory back before training resumes.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evoxtral.data.audio import decode_audio_value, num_audio_tokens, num_chunks
from evoxtral.utils.logging import get_logger

logger = get_logger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON_ENV = "EVOXTRAL_VLLM_PYTHON"
DEFAULT_VLLM_VENV = REPO_ROOT / ".venv-vllm"
# Room for the prompt's text tokens around the audio placeholders ([INST], [BEGIN_AUDIO], lang:en, [TRANSCRIBE]).
PROMPT_TEXT_TOKENS = 16
# On CPU vLLM reserves this many GiB for its KV cache unless told otherwise; 1 fits small machines and tiny models.
CPU_KV_CACHE_GIB = "1"


# vLLM 0.32's CPU attention (vllm/v1/attention/backends/cpu_attn.py) takes these head sizes only.
CPU_ATTENTION_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


class VllmUnavailableError(RuntimeError):
    """No vLLM environment to run in, or one that cannot run this model; the message says what to do."""


def check_runs_on_this_machine(model_dir: str | Path) -> None:
    """Refuse, before vLLM starts, an export that vLLM's CPU build cannot attend with (evoxtral-tiny's heads of 16)."""
    import torch

    head_dim = json.loads((Path(model_dir) / "params.json").read_text())["head_dim"]
    if not torch.cuda.is_available() and head_dim not in CPU_ATTENTION_HEAD_SIZES:
        raise VllmUnavailableError(
            f"vLLM's CPU attention takes head sizes {list(CPU_ATTENTION_HEAD_SIZES)}; this model's is {head_dim}. "
            "For a tiny model vLLM runs on CPU: python -m evoxtral.model.tiny --num-attention-heads 2 --output-dir DIR"
        )


def find_vllm_python() -> str | None:
    """The interpreter of the vLLM environment: ``$EVOXTRAL_VLLM_PYTHON``, else the repo's `.venv-vllm`."""
    named = os.environ.get(VLLM_PYTHON_ENV)
    if named:
        return named
    candidate = DEFAULT_VLLM_VENV / "bin" / "python"
    return str(candidate) if candidate.is_file() else None


def vllm_environment() -> dict[str, str]:
    """The worker's environment: this repo importable, offline, a CPU-sized KV cache unless one is set."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KV_CACHE_GIB)
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def run_vllm(
    model_dir: str | Path,
    audios: Sequence[Any],
    runs: list[dict],
    *,
    max_lora_rank: int | None = None,
    dtype: str = "auto",
    language: str | None = "en",
    seed: int = 0,
    python: str | None = None,
) -> dict:
    """Start one vLLM engine on ``model_dir`` and decode every audio with every run's settings (see vllm_worker).

    Audio is anything `decode_audio_value` takes; bad audio raises `AudioDecodeError` before vLLM starts.
    """
    python = python or find_vllm_python()
    if python is None:
        raise VllmUnavailableError(f"no vLLM environment: run `make vllm-venv` or set {VLLM_PYTHON_ENV}")
    check_runs_on_this_machine(model_dir)
    clips = [decode_audio_value(audio) for audio in audios]
    longest = max((len(clip) for clip in clips), default=0)
    max_tokens = max(settings["max_tokens"] for settings in runs)
    with tempfile.TemporaryDirectory(prefix="evoxtral-vllm-") as scratch:
        paths = []
        for index, clip in enumerate(clips):
            paths.append(str(Path(scratch) / f"clip{index:06d}.npy"))
            np.save(paths[-1], np.asarray(clip, dtype=np.float32))
        request = {
            "model": str(model_dir),
            "dtype": dtype,
            "max_model_len": num_audio_tokens(longest) + PROMPT_TEXT_TOKENS + max_tokens,
            "max_chunks": max(1, num_chunks(longest)),
            "max_lora_rank": max_lora_rank,
            "language": language,
            "seed": seed,
            "clips": paths,
            "runs": runs,
        }
        request_path, result_path = Path(scratch) / "request.json", Path(scratch) / "result.json"
        request_path.write_text(json.dumps(request))
        command = [python, "-m", "evoxtral.model.vllm_worker", str(request_path), str(result_path)]
        logger.info("Starting vLLM on %s for %d clips x %d settings", model_dir, len(clips), len(runs))
        completed = subprocess.run(command, env=vllm_environment(), cwd=REPO_ROOT, stdout=sys.stderr)
        if completed.returncode != 0 or not result_path.is_file():
            raise RuntimeError(f"vLLM exited with status {completed.returncode} (its log is above)")
        result = json.loads(result_path.read_text())
    # The largest resident set among the processes this one has waited for: vLLM's, unless an earlier child was larger.
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return result


def decode_token_ids(processor, token_ids: Sequence[int]) -> str:
    """Text as `evoxtral.model.generation.decode_continuations` gives it (special tokens out, spaces stripped)."""
    return processor.tokenizer.decode(list(token_ids), skip_special_tokens=True).strip()


def lora_of(export) -> tuple[str | None, int | None]:
    """(LoRA folder, max LoRA rank) of a `VllmExport` or an export folder."""
    if hasattr(export, "model_dir"):
        return (str(export.lora_dir) if export.lora_dir else None), export.lora_rank
    manifest = json.loads((Path(export) / "evoxtral_export.json").read_text())
    return manifest["lora_dir"], manifest["max_lora_rank"]


def model_dir_of(export) -> str:
    return str(export.model_dir if hasattr(export, "model_dir") else export)


def sample_transcripts_vllm(
    export,
    processor,
    audios: Sequence[Any],
    *,
    k: int = 4,
    temperature: float = 0.7,
    top_p: float = 0.9,
    max_new_tokens: int = 512,
    seed: int | None = None,
    language: str | None = "en",
    min_new_tokens: int = 0,
    python: str | None = None,
) -> list[list[str]]:
    """k samples per clip from vLLM (``n=k``, the export's LoRA as a LoRA request): RAFT's `sampler: vllm`.

    Clip i's samples are seeded with ``seed + i``, so a clip's samples do not depend on which clips share the run.
    """
    lora, rank = lora_of(export)
    settings = {
        "name": "samples",
        "lora": lora,
        "n": k,
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": max_new_tokens,
        "min_tokens": min_new_tokens,
        "seed": seed,
    }
    result = run_vllm(
        model_dir_of(export), audios, [settings], max_lora_rank=rank, language=language, python=python,
        seed=seed or 0,
    )  # fmt: skip
    return [[decode_token_ids(processor, ids) for ids in row["token_ids"]] for row in result["runs"]["samples"]]


def transcribe_vllm(
    export, processor, audios: Sequence[Any], *, max_new_tokens: int = 512, language: str | None = "en",
    with_lora: bool = True, python: str | None = None,
) -> list[str]:  # fmt: skip
    """Greedy transcripts from vLLM, as `evoxtral.model.inference.transcribe` gives them from transformers."""
    lora, rank = lora_of(export)
    settings = {"name": "greedy", "lora": lora if with_lora else None, "n": 1, "temperature": 0.0,
                "max_tokens": max_new_tokens}  # fmt: skip
    result = run_vllm(model_dir_of(export), audios, [settings], max_lora_rank=rank, language=language, python=python)
    return [decode_token_ids(processor, row["token_ids"][0]) for row in result["runs"]["greedy"]]
