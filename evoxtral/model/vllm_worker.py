"""Runs inside the vLLM environment (`.venv-vllm`, started by `evoxtral.model.vllm_runner`): one vLLM offline engine
over an exported model, every clip with every requested setting, token ids back as JSON.

It imports only vLLM, numpy and mistral-common (what that environment has), never the rest of evoxtral: vLLM's CPU
build pins a transformers that the training stack cannot use, so the two meet through files.

    .venv-vllm/bin/python -m evoxtral.model.vllm_worker request.json result.json

request.json: {"model": export dir, "dtype", "max_model_len", "max_lora_rank" (null: no LoRA), "language",
"clips": [.npy files of 16 kHz float32 audio], "runs": [{"name", "lora" (folder or null), "n", "temperature",
"top_p", "max_tokens", "min_tokens", "seed", "logprobs" (top-k of each generated token, 0: none), "num_clips" (the
first this many clips only, e.g. a warm-up; null: all)}]}
"""

from __future__ import annotations

import json
import sys
import time

SAMPLING_RATE = 16_000


def transcription_prompt(tokenizer, audio, language: str | None) -> dict:
    """The transcription prompt vLLM's own `/v1/audio/transcriptions` builds (mistral-common's request encoder), so
    offline sampling and the server see the same tokens as transformers' `apply_transcription_request`."""
    from mistral_common.protocol.transcription.request import TranscriptionRequest
    from mistral_common.tokens.tokenizers.audio import Audio

    wav = Audio(audio, SAMPLING_RATE, format="wav")
    request = TranscriptionRequest(audio=wav.to_base64("wav"), language=language)
    tokenized = tokenizer.instruct.encode_transcription(request)
    return {
        "prompt_token_ids": tokenized.tokens,
        "multi_modal_data": {"audio": [(chunk.audio_array, SAMPLING_RATE) for chunk in tokenized.audios]},
    }


def run(request: dict) -> dict:
    import numpy as np
    import torch
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    started = time.perf_counter()
    use_lora = request.get("max_lora_rank") is not None
    on_gpu = torch.cuda.is_available()
    scheduling = {}
    if not on_gpu and any(settings.get("seed") is not None for settings in request["runs"]):
        # vLLM's CPU build fails a seeded request whose prefill is split over steps (`CPU Generator does not use
        # offset`): schedule every prompt's prefill whole.
        scheduling = {"enable_chunked_prefill": False, "max_num_batched_tokens": max(request["max_model_len"], 8192)}
    engine = LLM(
        model=request["model"],
        tokenizer_mode="mistral",
        config_format="mistral",
        load_format="mistral",
        dtype=request.get("dtype", "auto"),
        max_model_len=request["max_model_len"],
        enable_lora=use_lora,
        max_lora_rank=request.get("max_lora_rank") or 16,
        max_loras=1,
        seed=request.get("seed", 0),
        limit_mm_per_prompt={"audio": request.get("max_chunks", 1)},
        # On CPU, compiling the graphs costs more start-up than it saves on a test-sized run; on a GPU they pay.
        enforce_eager=request.get("enforce_eager", not on_gpu),
        **scheduling,
    )
    load_seconds = time.perf_counter() - started
    tokenizer = engine.get_tokenizer()
    prompts = [transcription_prompt(tokenizer, np.load(path), request.get("language")) for path in request["clips"]]
    results, timings = {}, {}
    for index, settings in enumerate(request["runs"]):
        run_prompts = prompts[: settings.get("num_clips") or len(prompts)]
        lora = LoRARequest(f"adapter-{index}", index + 1, settings["lora"]) if settings.get("lora") else None
        sampling = [
            SamplingParams(
                n=settings.get("n", 1),
                temperature=settings.get("temperature", 0.0),
                top_p=settings.get("top_p", 1.0),
                max_tokens=settings["max_tokens"],
                min_tokens=settings.get("min_tokens", 0),
                seed=None if settings.get("seed") is None else settings["seed"] + clip,
                logprobs=settings.get("logprobs") or None,
            )
            for clip in range(len(run_prompts))
        ]
        started = time.perf_counter()
        outputs = engine.generate(run_prompts, sampling, lora_request=lora, use_tqdm=True)
        timings[settings["name"]] = time.perf_counter() - started
        results[settings["name"]] = [
            {
                "prompt_token_ids": list(output.prompt_token_ids),
                "token_ids": [list(sample.token_ids) for sample in output.outputs],
                "logprobs": [
                    [{str(token): entry.logprob for token, entry in step.items()} for step in sample.logprobs or []]
                    for sample in output.outputs
                ],
            }
            for output in outputs
        ]
    memory = {}
    if torch.cuda.is_available():  # the engine runs in another process: read the device's own count
        free, total = torch.cuda.mem_get_info()
        memory["cuda_memory_used_gib"] = (total - free) / 2**30
    return {"runs": results, "load_seconds": load_seconds, "generate_seconds": timings, **memory}


def main(argv: list[str] | None = None) -> None:
    request_path, result_path = argv or sys.argv[1:]
    with open(request_path) as file:
        request = json.load(file)
    result = run(request)
    with open(result_path, "w") as file:
        json.dump(result, file)


if __name__ == "__main__":  # vLLM's engine starts worker processes that re-import this module
    main()
