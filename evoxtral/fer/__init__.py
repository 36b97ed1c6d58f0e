"""Facial emotion recognition: MobileViT-XXS on the 8 AffectNet classes, trained with the transformers Trainer,
exported to ONNX with Optimum and served with onnxruntime."""
