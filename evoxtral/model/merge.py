"""Merge a LoRA adapter into its base model: one self-contained folder (weights + processor) for serving.

    python -m evoxtral.model.merge outputs/tiny/sft --output-dir outputs/tiny/sft-merged
    python -m evoxtral.model.merge you/evoxtral-lora --base-model mistralai/Voxtral-Mini-3B-2507 \\
        --output-dir evoxtral-merged --dtype bfloat16

The merged folder loads with `load_model_and_processor(folder)`, `VoxtralForConditionalGeneration.
from_pretrained` and `AutoProcessor.from_pretrained`, with no PEFT at inference time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from evoxtral.model.loading import load_model_and_processor
from evoxtral.model.processor import save_processor
from evoxtral.model.tiny import TINY_MODEL_NAME
from evoxtral.utils.logging import get_logger

logger = get_logger(__name__)


def merge_adapter(adapter: str, output_dir: str, *, base_model: str | None = None, dtype: str = "auto") -> Path:
    """Load base + adapter, fold the LoRA weights into the base weights, save model and processor."""
    if base_model is None:
        model, processor = load_model_and_processor(adapter, dtype=dtype)
    else:
        model, processor = load_model_and_processor(base_model, adapter=adapter, dtype=dtype)
    merged = model.merge_and_unload()
    merged.save_pretrained(output_dir)
    save_processor(processor, output_dir)
    return Path(output_dir)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m evoxtral.model.merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("adapter", help="adapter folder or hub id (its base model is read from adapter_config.json)")
    parser.add_argument("--output-dir", required=True, help="where the merged model folder goes")
    parser.add_argument("--base-model", help=f"override the recorded base model (hub id, folder, {TINY_MODEL_NAME})")
    parser.add_argument("--dtype", default="auto", help="auto (the checkpoint's), bfloat16, float16 or float32")
    args = parser.parse_args(argv)
    folder = merge_adapter(args.adapter, args.output_dir, base_model=args.base_model, dtype=args.dtype)
    size = sum(path.stat().st_size for path in folder.glob("*.safetensors")) / 2**20
    logger.info("Merged %s into %s (%.1f MiB of weights + processor)", args.adapter, folder, size)
    return folder


if __name__ == "__main__":
    main()
