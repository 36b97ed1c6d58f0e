"""Export a trained facial-emotion checkpoint to ONNX with Optimum (in its own virtualenv), check it against
PyTorch on real face photos, and quantise it to int8:
`python recipes/fer_onnx.py --checkpoint_dir outputs/fer/tiny --onnx_dir outputs/fer/tiny-onnx`."""

from transformers import HfArgumentParser

from evoxtral.configs import FerOnnxArguments
from evoxtral.fer.export import export_and_check, format_parity_summary

if __name__ == "__main__":
    (args,) = HfArgumentParser(FerOnnxArguments).parse_args_into_dataclasses()
    report = export_and_check(
        args.checkpoint_dir, args.onnx_dir, args.export_venv, tuple(args.export_requirements), args.atol, args.quantize
    )
    print(format_parity_summary(report))
    print(f"Figures: {args.onnx_dir}/parity.json")
