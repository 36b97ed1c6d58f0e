"""One way to load Voxtral + its processor, used by training, RAFT, evaluation, the server and the demo.

`model_name_or_path` may be a hub id (`mistralai/Voxtral-Mini-3B-2507`), a local model folder (a merged
model included), a folder holding a PEFT adapter (its base model is read from adapter_config.json), or a
built-in offline model (`evoxtral-tiny`). A hub id that cannot be fetched fails at once with `ModelLoadError`,
before any download starts, naming the offline default.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import huggingface_hub
import torch
from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, HFValidationError, RepositoryNotFoundError
from transformers import AutoConfig, VoxtralForConditionalGeneration, VoxtralProcessor

from evoxtral.model.processor import has_processor_files, load_processor
from evoxtral.model.tiny import BUILT_IN_MODELS, TINY_MODEL_NAME, built_in_model_path

ADAPTER_CONFIG = "adapter_config.json"
OFFLINE_HINT = (
    f"The built-in offline default is `{TINY_MODEL_NAME}` (a random-init Voxtral built locally, no download). "
    "With HF_HUB_OFFLINE=1 only models already in the local Hugging Face cache load."
)
HUB_PROBE_TIMEOUT_S = 10


class ModelLoadError(RuntimeError):
    """A model, adapter or processor cannot be found or fetched; the message says why and what to use instead."""


def load_model_and_processor(
    model_name_or_path: str | os.PathLike,
    *,
    adapter: str | os.PathLike | None = None,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device | None = None,
    attn_implementation: str | None = None,
    trainable: bool = False,
    random_init: bool = False,
) -> tuple[torch.nn.Module, VoxtralProcessor]:
    """Load (model, processor).

    adapter: a PEFT LoRA adapter (folder or hub id) put on top of the model; trainable=True keeps it trainable
        (to continue training the same adapter), otherwise the model is frozen in eval mode.
    dtype: "auto" (the checkpoint's dtype), a name such as "bfloat16", or a torch.dtype.
    device: None leaves the model on CPU for a trainer to place; "auto" picks CUDA when there is one.
    random_init: keep the architecture and processor but start from random weights (training from scratch).
    """
    base_name = os.fspath(model_name_or_path)
    source = resolve_model_source(base_name)
    adapter_config = _adapter_config_path(source) if adapter is None else None
    if adapter_config is not None:
        adapter, base_name = source, _adapter_base_model(adapter_config)
        source = resolve_model_source(base_name)
    adapter_source = resolve_model_source(adapter, required_files=(ADAPTER_CONFIG,)) if adapter is not None else None

    processor_source = adapter_source if adapter_source and has_processor_files(adapter_source) else source
    try:
        processor = load_processor(processor_source)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot load a Voxtral processor from {processor_source}: {error}") from error

    torch_dtype = dtype if isinstance(dtype, torch.dtype) or dtype == "auto" else getattr(torch, dtype)
    placement = _pick_device(device)
    model_kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        if random_init:
            config = AutoConfig.from_pretrained(source, **model_kwargs)
            model = VoxtralForConditionalGeneration._from_config(
                config, **({} if torch_dtype == "auto" else {"dtype": torch_dtype})
            )
        else:
            model = VoxtralForConditionalGeneration.from_pretrained(
                source, dtype=torch_dtype, device_map=placement, **model_kwargs
            )
    except OSError as error:
        raise ModelLoadError(f"cannot load a Voxtral model from {source}: {error}") from error
    # Adapters record this name as their base model: keep it portable (a built-in name, a hub id).
    model.name_or_path = model.config.name_or_path = _portable_name(base_name, source)

    if adapter_source is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_source, is_trainable=trainable)
    if placement is not None:
        model.to(placement)
    if trainable:
        model.train()
    else:
        model.eval()
        model.requires_grad_(False)
    return model, processor


def resolve_model_source(
    name_or_path: str | os.PathLike, *, required_files: tuple[str, ...] = ("config.json", ADAPTER_CONFIG)
) -> str:
    """Map a model name to something `from_pretrained` opens without surprises: a folder or a reachable hub id."""
    name = os.fspath(name_or_path)
    if name in BUILT_IN_MODELS:
        return str(built_in_model_path(name))
    path = Path(name).expanduser()
    if path.is_dir():
        if not any((path / required).is_file() for required in required_files):
            raise ModelLoadError(f"{name} holds no {' or '.join(required_files)}: not a model or adapter folder")
        return str(path.resolve())
    if path.exists():
        raise ModelLoadError(f"{name} is a file; expected a model folder or a hub id")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelLoadError(f"no such folder: {name}. {OFFLINE_HINT}")
    _check_hub_repo(name, required_files)
    return name


def _check_hub_repo(repo_id: str, required_files: tuple[str, ...]) -> None:
    try:
        cached = [huggingface_hub.try_to_load_from_cache(repo_id, name) for name in required_files]
    except HFValidationError as error:
        raise ModelLoadError(f"{repo_id!r} is neither a folder nor a valid hub id. {OFFLINE_HINT}") from error
    if any(isinstance(path, str) for path in cached):
        return
    if _hub_offline():
        raise ModelLoadError(
            f"{repo_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading it. "
            f"{OFFLINE_HINT}"
        )
    try:
        huggingface_hub.model_info(repo_id, timeout=HUB_PROBE_TIMEOUT_S)
    except GatedRepoError as error:
        raise ModelLoadError(
            f"{repo_id} is gated: accept its terms on its Hub page and set HF_TOKEN. {OFFLINE_HINT}"
        ) from error
    except RepositoryNotFoundError as error:
        raise ModelLoadError(
            f"{repo_id} does not exist on the Hugging Face Hub (or is private: set HF_TOKEN). {OFFLINE_HINT}"
        ) from error
    except Exception as error:  # connection refused, DNS, timeout, proxy: all mean "no hub from here"
        raise ModelLoadError(
            f"cannot reach the Hugging Face Hub to fetch {repo_id} ({type(error).__name__}: {error}). {OFFLINE_HINT}"
        ) from error


def _hub_offline() -> bool:
    return any(
        os.environ.get(var, "").upper() in {"1", "ON", "YES", "TRUE"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _adapter_config_path(source: str) -> Path | None:
    """adapter_config.json of a folder or hub repo that holds a PEFT adapter; None for a model."""
    if Path(source).is_dir():
        local = Path(source) / ADAPTER_CONFIG
        return local if local.is_file() else None
    try:
        return Path(huggingface_hub.hf_hub_download(source, ADAPTER_CONFIG))
    except EntryNotFoundError:
        return None


def _adapter_base_model(adapter_config: Path) -> str:
    base = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(f"{adapter_config} names no base model; pass the base model explicitly")
    return base


def _portable_name(requested: str, source: str) -> str:
    return requested if requested in BUILT_IN_MODELS or not Path(source).is_dir() else source


def _pick_device(device: str | torch.device | None) -> torch.device | None:
    if device is None:
        return None
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
