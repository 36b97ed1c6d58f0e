"""Export a trained facial-emotion checkpoint to ONNX with Optimum (in its own virtualenv), check it against
PyTorch on real face photos, and quantise it to int8:
`python recipes/fer_onnx.py --checkpoint_dir outputs/fer/tiny --onnx_dir outputs/fer/tiny-onnx`."""

from dataclasses import dataclass, field

from transformers import HfArgumentParser

from evoxtral.fer.export import DEFAULT_EXPORT_VENV, EXPORT_REQUIREMENTS, export_and_check, format_parity_summary


@dataclass
class FerOnnxArguments:
    checkpoint_dir: str = field(metadata={"help": "A checkpoint folder saved by recipes/fer.py."})
    onnx_dir: str = field(metadata={"help": "Where model.onnx, model_quantized.onnx and parity.json go."})
    export_venv: str = field(default=DEFAULT_EXPORT_VENV, metadata={"help": "The exporter's own virtualenv."})
    export_requirements: list[str] = field(
        default_factory=lambda: list(EXPORT_REQUIREMENTS),
        metadata={"help": "What the exporter's virtualenv installs (optimum-onnx pins transformers < 4.58)."},
    )
    atol: float = field(default=1e-4, metadata={"help": "Largest accepted |ONNX - PyTorch| logit difference."})
    quantize: bool = field(default=True, metadata={"help": "Also write and check an int8 dynamic quantisation."})


if __name__ == "__main__":
    (args,) = HfArgumentParser(FerOnnxArguments).parse_args_into_dataclasses()
    report = export_and_check(
        args.checkpoint_dir, args.onnx_dir, args.export_venv, tuple(args.export_requirements), args.atol, args.quantize
    )
    print(format_parity_summary(report))
    print(f"Figures: {args.onnx_dir}/parity.json")
