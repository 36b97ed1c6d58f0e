"""The arguments of every stage, in one module: each recipe script parses its dataclasses from ``--config x.yaml``
with TRL's parser, and command-line flags override the YAML.

| stage | dataclasses |
| --- | --- |
| SFT (recipes/sft.py) | TRL's ScriptArguments, SFTConfig, ModelConfig, DatasetMixtureConfig + VoxtralSFTArguments |
| RAFT (recipes/raft.py) | RaftArguments (TRL's ScriptArguments + RAFT's own), SFTConfig, ModelConfig, VoxtralSFTArguments |
| eval (recipes/eval.py) | EvalArguments |
| learning check (recipes/learning_check.py) | LearningCheckArguments |
| demo (recipes/demo.py, make demo) | DemoArguments |
| data (data_gen/generate.py) | DataGenArguments |
| FER (recipes/fer.py, recipes/fer_onnx.py) | FerDataArguments, FerModelArguments + TrainingArguments; FerOnnxArguments |

SFT and RAFT read their data from the same keys (``dataset_name``, ``dataset_train_split``, ``dataset_test_split``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, SFTConfig, TrlParser

from evoxtral.scoring.evoxtral_bench import PROTOCOLS
from evoxtral.scoring.rewards import (
    DEFAULT_DROP_FRACTION,
    DEFAULT_REWARD_NAMES,
    DEFAULT_REWARD_WEIGHTS,
    get_reward_funcs,
)

# FER: the backbone fine-tuned by default, and the ONNX exporter's own virtualenv. optimum-onnx 0.1.0 pins
# optimum ~= 2.1 and transformers < 4.58; pillow loads the checkpoint's image processor so that the export folder
# carries it too.
FER_PRETRAINED_BACKBONE = "apple/mobilevit-xx-small"
FER_EXPORT_REQUIREMENTS = ("torch==2.13.0", "optimum-onnx[onnxruntime]==0.1.0", "pillow")
FER_EXPORT_VENV = ".venv-onnx"


# --- SFT -------------------------------------------------------------------------------------------------------------


@dataclass
class WeightedDataset:
    """One entry of a ``dataset_mixture`` (alignment-handbook's shape): a hub id or a ``save_to_disk`` folder, its
    configuration and split, the columns kept, and ``weight``, the share of its rows that goes into the mixture
    (0.5: half of them, drawn with the mixture's seed; above 1 rows repeat: 2.0 takes every row twice)."""

    id: str
    config: str | None = None
    split: str = "train"
    columns: list[str] | None = None
    weight: float | None = None

    def __post_init__(self):
        if self.weight is not None and self.weight < 0:
            raise ValueError(f"dataset_mixture: {self.id} has a negative weight {self.weight}")


@dataclass
class WeightedMixture:
    """alignment-handbook's ``dataset_mixture``: ``datasets`` (WeightedDataset entries), ``seed`` (which rows a
    weight below 1 draws, and the order of the mixture), ``test_split_size`` (hold out that share of the mixture for
    evaluation; unset: each dataset's ``dataset_test_split`` where it has one)."""

    datasets: list[WeightedDataset]
    seed: int = 0
    test_split_size: float | None = None

    @classmethod
    def from_config(cls, value: dict | str) -> WeightedMixture:
        value = json.loads(value) if isinstance(value, str) else dict(value)
        unknown = set(value) - {"datasets", "seed", "test_split_size"}
        if unknown or not value.get("datasets"):
            raise ValueError(
                f"dataset_mixture takes datasets (a non-empty list), seed and test_split_size; got {sorted(value)}"
            )
        entries = []
        for entry in value["datasets"]:
            extra = set(entry) - {"id", "config", "split", "columns", "weight"}
            if extra:
                raise ValueError(f"dataset_mixture entry {entry}: unknown keys {sorted(extra)}")
            entries.append(WeightedDataset(**entry))
        return cls(entries, int(value.get("seed", 0)), value.get("test_split_size"))


@dataclass
class VoxtralSFTArguments:
    """Audio, data and model options of the Voxtral SFT recipe (TRL's own dataclasses hold the rest)."""

    audio_column: str = field(default="audio", metadata={"help": "Column holding the audio (datasets.Audio)."})
    text_column: str = field(default="tagged_text", metadata={"help": "Column holding the tagged transcript."})
    language: str = field(default="en", metadata={"help": "Language of the transcription request."})
    precompute_features: bool = field(
        default=False,
        metadata={
            "help": "Compute log-mel features once with datasets.map (1.5 MB a 30 s chunk) instead of per batch."
        },
    )
    audio_encoder_cache: bool = field(
        default=False,
        metadata={
            "help": "Run the frozen audio encoder once per clip before training and feed its output to the projector "
            "(stored with the dataset, 3.7 MiB a 30 s chunk in float16) instead of running it at every step. "
            "Needs a frozen, LoRA-free encoder."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N evaluation rows."})
    freeze_audio_encoder: bool = field(
        default=True, metadata={"help": "Keep the audio encoder's weights fixed in full fine-tuning (no LoRA)."}
    )
    lora_on_audio_encoder: bool = field(
        default=False,
        metadata={"help": "Also put LoRA on the encoder's q/k/v projections, as the original suffix match did."},
    )
    random_init: bool = field(
        default=False,
        metadata={"help": "Start from random weights (same architecture): for from-scratch learning checks."},
    )
    generation_eval_samples: int = field(
        default=16,
        metadata={"help": "Validation clips transcribed and scored with Evoxtral-Bench at each evaluation (0: off)."},
    )
    generation_max_new_tokens: int = field(default=256, metadata={"help": "Token budget of those transcriptions."})
    bench_protocol: str = field(default="corpus", metadata={"help": "Evoxtral-Bench protocol for those scores."})
    auto_resume: bool = field(
        default=True, metadata={"help": "Continue from the last checkpoint in output_dir when there is one."}
    )
    dataset_mixture: dict | str | None = field(
        default=None,
        metadata={
            "help": "Datasets mixed by weight, alignment-handbook's shape (JSON on the command line): {datasets: "
            "[{id, config, split, columns, weight}], seed, test_split_size}; replaces dataset_name."
        },
    )

    def __post_init__(self):
        if self.dataset_mixture is not None and not isinstance(self.dataset_mixture, WeightedMixture):
            self.dataset_mixture = WeightedMixture.from_config(self.dataset_mixture)
        if self.audio_encoder_cache and self.lora_on_audio_encoder:
            raise ValueError(
                "audio_encoder_cache needs a frozen audio encoder, and lora_on_audio_encoder trains it: its outputs "
                "are computed once, before training. Turn one of them off."
            )


SFT_ARGUMENT_TYPES = (ScriptArguments, SFTConfig, ModelConfig, DatasetMixtureConfig, VoxtralSFTArguments)


def make_sft_parser(subparsers=None, prog: str | None = None) -> TrlParser:
    if subparsers is not None:
        return subparsers.add_parser("sft", help="Voxtral SFT", dataclass_types=SFT_ARGUMENT_TYPES)
    return TrlParser(SFT_ARGUMENT_TYPES, prog=prog)


# --- RAFT ------------------------------------------------------------------------------------------------------------


@dataclass
class RaftArguments(ScriptArguments):
    """RAFT's own options, on top of TRL's ScriptArguments: the data keys are the SFT recipe's (``dataset_name``,
    ``dataset_config``, ``dataset_train_split`` sampled and trained on, ``dataset_test_split`` evaluated during
    training when eval_strategy is not "no"). ``recipes/raft.py`` also parses the SFT recipe's model (ModelConfig),
    training (SFTConfig) and audio (VoxtralSFTArguments) options, so one YAML reads like the SFT recipe's."""

    adapter: str | None = field(
        default=None,
        metadata={
            "help": "the SFT LoRA adapter on model_name_or_path that round 1 samples from and continues; none: "
            "continue model_name_or_path itself (a whole model, or a folder holding an adapter)"
        },
    )
    id_column: str = field(default="id", metadata={"help": "clip ids (row positions when the column is absent)"})
    rounds: int = field(default=1, metadata={"help": "sample -> select -> train, repeated; round r continues r-1"})
    samples_per_input: int = field(default=4, metadata={"help": "k: transcripts sampled per training clip"})
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 512
    sampling_batch_size: int = field(default=8, metadata={"help": "clips per generate call (each gives k rows)"})
    sampler: str = field(
        default="transformers",
        metadata={
            "help": "transformers (sample_transcripts: the KV-cache fan-out) or vllm (vLLM's offline engine, n=k, "
            "on an export of the round's model with its language-model LoRA as a LoRA request; needs make vllm-venv "
            "or EVOXTRAL_VLLM_PYTHON)"
        },
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: list(DEFAULT_REWARD_NAMES),
        metadata={
            "help": f"rewards by name from evoxtral.scoring.rewards.REWARD_FUNCS (default {DEFAULT_REWARD_NAMES})"
        },
    )
    reward_weights: list[float] = field(
        default_factory=lambda: list(DEFAULT_REWARD_WEIGHTS),
        metadata={"help": "one weight per reward; the weighted sum ranks the k samples"},
    )
    reward_protocol: str = field(
        default="evoxtral", metadata={"help": "text rules of the rewards: evoxtral (original) or corpus"}
    )
    drop_fraction: float = field(
        default=DEFAULT_DROP_FRACTION,
        metadata={"help": "threshold = sorted best rewards at floor(n * drop_fraction); only clips above it train"},
    )
    reference_fallback: bool = field(
        default=False,
        metadata={
            "help": "train on the reference where the best sample scores below the reference's own reward "
            "(the reward of the reference scored against itself) minus reference_fallback_margin"
        },
    )
    reference_fallback_margin: float = 0.0

    def __post_init__(self):
        if self.adapter is not None and self.adapter.strip().lower() in ("", "none", "null"):
            self.adapter = None  # the command line's way to say "no adapter"
        get_reward_funcs(self.reward_funcs)  # unknown names fail at parse time, before a model loads
        if len(self.reward_funcs) != len(self.reward_weights):
            raise ValueError(
                f"reward_funcs has {len(self.reward_funcs)} names but reward_weights {len(self.reward_weights)} "
                "weights: give one weight per reward"
            )
        if self.sampler not in ("transformers", "vllm"):
            raise ValueError(f"sampler must be transformers or vllm, got {self.sampler!r}")
        if self.rounds < 1 or self.samples_per_input < 1:
            raise ValueError("rounds and samples_per_input must be at least 1")
        if not 0 <= self.drop_fraction < 1:
            raise ValueError(f"drop_fraction must be in [0, 1), got {self.drop_fraction}")


RAFT_ARGUMENT_TYPES = (RaftArguments, SFTConfig, ModelConfig, VoxtralSFTArguments)


def make_raft_parser() -> TrlParser:
    return TrlParser(RAFT_ARGUMENT_TYPES)


# --- Evaluation ------------------------------------------------------------------------------------------------------


@dataclass
class EvalArguments:
    """Options of ``recipes/eval.py`` (also read from its YAML with ``--config``)."""

    models: list[str] = field(
        default_factory=lambda: ["base=evoxtral-tiny"],
        metadata={"help": "LABEL=MODEL or LABEL=MODEL+ADAPTER, evaluated side by side in this order"},
    )
    dataset: str = field(default="outputs/data/tiny/dataset", metadata={"help": "save_to_disk folder or hub id"})
    split: str = "test"
    max_samples: int | None = field(default=None, metadata={"help": "first N clips (50: the published table)"})
    text_column: str = "tagged_text"
    audio_column: str = "audio"
    id_column: str = "id"
    batch_size: int = 8
    max_new_tokens: int = 512
    dtype: str = field(default="auto", metadata={"help": "auto, bfloat16, float16 or float32"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present), cpu, cuda, cuda:1 ..."})
    protocols: list[str] = field(default_factory=lambda: ["corpus", "evoxtral"])
    collar: int | None = field(default=None, metadata={"help": "corpus protocol: position tolerance in words"})
    min_support: int = 3
    bootstrap: int = field(default=0, metadata={"help": "resamples for 95%% intervals (0: none)"})
    seed: int = 0
    mismatched_audio_control: bool = field(
        default=False, metadata={"help": "also decode every clip with another clip's audio (does the model listen?)"}
    )
    skip_missing_models: bool = field(
        default=False, metadata={"help": "report and skip models or adapters that cannot be loaded"}
    )
    share_encoder_states: bool = field(
        default=False,
        metadata={
            "help": "run the audio encoder once per clip for all models whose encoders have the same weights (frozen "
            "in fine-tuning), and for the mismatched-audio control; holds the states in memory (small eval sets)"
        },
    )
    output_dir: str = "outputs/eval/tiny"
    overwrite: bool = field(default=False, metadata={"help": "decode again instead of resuming saved predictions"})
    report_to: list[str] = field(default_factory=lambda: ["none"], metadata={"help": "none or wandb"})
    wandb_project: str = "evoxtral"
    run_name: str | None = None


# --- Learning check --------------------------------------------------------------------------------------------------


SCALES = ("tiny", "cpu", "full")


@dataclass(frozen=True)
class Targets:
    """What a model that hears the tags reaches at full scale (on the held-out split)."""

    own_wer_max: float = 0.05
    own_tag_f1_min: float = 0.95
    own_every_tag_f1_min: float = 0.85
    other_tag_f1_max: float = 0.30
    # The two RAFT-vs-SFT checks (no tag lower, SFT's weakest tag higher) count in the verdict.
    judge_raft_vs_sft: bool = True


@dataclass
class LearningCheckArguments:
    """Options of ``recipes/learning_check.py`` (read from recipes/learning_check/<scale>/learning_check.yaml).

    Relative paths are taken from the repository root, where every stage runs.
    """

    scale: str = field(
        default="tiny",
        metadata={
            "help": "tiny (CPU smoke check), cpu (the demo's experiment: 2 cores, targets expected to pass) or full "
            "(one GPU); picks the YAML when --config is not given"
        },
    )
    output_dir: str = field(
        default="outputs/learning_check/tiny",
        metadata={"help": "model/, sft/, raft/, eval/, logs/ and the results files go here"},
    )
    data_config: str = field(
        default="data_gen/configs/learning_check_tiny.yaml", metadata={"help": "the data_gen config of the data"}
    )
    data_dir: str | None = field(
        default=None, metadata={"help": "where the data stage writes (default: the data config's output_dir)"}
    )
    model_preset: str = field(
        default="tiny", metadata={"help": "a preset of evoxtral.model.tiny (tiny, small, tiny-whisper)"}
    )
    model_vocab_size: int | None = field(default=None, metadata={"help": "overrides the preset"})
    model_text_layers: int | None = field(default=None, metadata={"help": "overrides the preset"})
    model_audio_layers: int | None = field(default=None, metadata={"help": "overrides the preset"})
    model_hidden_size: int | None = field(default=None, metadata={"help": "overrides the preset"})
    model_num_attention_heads: int | None = field(default=None, metadata={"help": "overrides the preset"})
    model_seed: int = 0
    sft_config: str = "recipes/learning_check/tiny/sft.yaml"
    raft_config: str = "recipes/learning_check/tiny/raft.yaml"
    eval_config: str = "recipes/learning_check/tiny/eval.yaml"
    accelerate_config: str | None = field(
        default=None, metadata={"help": "accelerate launch --config_file for SFT and RAFT (e.g. one GPU)"}
    )
    num_processes: int = field(
        default=1, metadata={"help": "accelerate launch --num_processes for SFT and RAFT, without accelerate_config"}
    )
    protocol: str = field(default="corpus", metadata={"help": "Evoxtral-Bench protocol the targets are judged on"})
    targets_expected: bool = field(
        default=False, metadata={"help": "false: a smoke scale, the targets are reported but not expected to pass"}
    )
    own_wer_max: float = field(default=Targets.own_wer_max, metadata={"help": "target: own-audio WER at most"})
    own_tag_f1_min: float = field(default=Targets.own_tag_f1_min, metadata={"help": "target: own-audio tag F1"})
    own_every_tag_f1_min: float = field(
        default=Targets.own_every_tag_f1_min, metadata={"help": "target: own-audio F1 of every tag at least"}
    )
    other_tag_f1_max: float = field(
        default=Targets.other_tag_f1_max, metadata={"help": "target: tag F1 from another clip's audio at most"}
    )
    judge_raft_vs_sft: bool = field(
        default=Targets.judge_raft_vs_sft,
        metadata={"help": "the RAFT-vs-SFT checks count in the verdict (false: shown, not judged)"},
    )

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")

    @property
    def targets(self) -> Targets:
        return Targets(
            self.own_wer_max,
            self.own_tag_f1_min,
            self.own_every_tag_f1_min,
            self.other_tag_f1_max,
            self.judge_raft_vs_sft,
        )


@dataclass
class DemoArguments:
    """Options of ``recipes/demo.py`` (``make demo``): data -> SFT -> RAFT -> eval, then does the model hear the tags?"""

    output_dir: str = field(
        default="outputs", metadata={"help": "root of the stages' outputs: data/demo, demo/{sft,raft,eval}"}
    )
    data_config: str = "data_gen/configs/demo.yaml"
    sft_config: str = "recipes/demo/sft.yaml"
    raft_config: str = "recipes/demo/raft.yaml"
    eval_config: str = "recipes/demo/eval.yaml"
    num_processes: int = field(default=1, metadata={"help": "accelerate launch --num_processes for SFT and RAFT"})
    num_cpu_threads_per_process: int | None = field(
        default=None,
        metadata={"help": "accelerate launch --num_cpu_threads_per_process (default: the cores / num_processes)"},
    )
    own_tag_f1_min: float = field(
        default=0.80, metadata={"help": "target: the best trained model's own-audio tag F1 (corpus protocol)"}
    )
    gap_min: float = field(
        default=0.35, metadata={"help": "target: how far its own-audio tag F1 is above its other-audio tag F1"}
    )
    check: bool = field(default=False, metadata={"help": "exit with an error when the targets are missed (CI)"})


# --- Data generation -------------------------------------------------------------------------------------------------


# Where a data generation run's scripts come from: the two offline composers, an LLM, or a file.
SCRIPT_SOURCES = ("templates", "random_words", "llm", "file")
# Where its audio comes from: speech synthesised from scripts, or recordings that exist (a folder, a datasets dataset).
DATA_SOURCES = ("synthesis", "audio_folder", "hub")


def _as_dict(value: dict | str | None) -> dict | None:
    return json.loads(value) if isinstance(value, str) else value


@dataclass
class DataGenArguments:
    """Every setting of a data generation run; YAML configs set them, command-line flags override."""

    # Output
    output_dir: str = field(default="outputs/data/tiny", metadata={"help": "Run folder (plan, dataset, hub folder)."})
    cache_dir: str | None = field(default=None, metadata={"help": "Clip store; defaults to <output_dir>/clips."})
    seed: int = 0
    source: str = field(
        default="synthesis",
        metadata={
            "help": "synthesis (scripts -> speech) | audio_folder (recordings + metadata) | hub (a datasets dataset "
            "with audio and text columns)."
        },
    )

    # Recordings (source: audio_folder or hub)
    audio_dir: str | None = field(default=None, metadata={"help": "audio_folder: the folder holding the audio."})
    metadata_file: str | None = field(
        default=None,
        metadata={"help": "audio_folder: file_name + text records (.csv/.jsonl/.json) or `name: text` lines (.txt)."},
    )
    dataset_name: str | None = field(default=None, metadata={"help": "hub: a datasets id or a local dataset folder."})
    dataset_config: str | None = field(default=None, metadata={"help": "hub: the dataset's configuration."})
    dataset_splits: list[str] | None = field(default=None, metadata={"help": "hub: splits to take (default: all)."})
    audio_column: str = field(default="audio", metadata={"help": "hub: the audio column."})
    text_column: str = field(default="tagged_text", metadata={"help": "The transcript column (hub, audio_folder)."})
    id_column: str = field(default="id", metadata={"help": "hub: the id column (row positions when absent)."})

    # Scripts (source: synthesis)
    script_source: str = field(
        default="templates", metadata={"help": "templates | random_words | llm | file (see data_gen/README.md)."}
    )
    scripts_file: str | None = field(default=None, metadata={"help": "JSON/JSONL records with tagged_text."})
    word_bank_size: int | None = field(
        default=None,
        metadata={
            "help": "random_words: draw from the first N words of the neutral bank (a small vocabulary a small "
            "model can learn to spell); default: all of it"
        },
    )
    num_clips: int = 96
    tags: list[str] = field(
        default_factory=lambda: ["original"],
        metadata={"help": "Tag set: a named set (original, original_reported, all) or a list of vocabulary tags."},
    )
    min_support: int = field(default=1, metadata={"help": "Minimum occurrences of every tag in every split."})
    slice_fractions: dict | str | None = field(default=None, metadata={"help": "JSON; default: the original mix."})
    domains: list[str] | None = field(default=None, metadata={"help": "Domains of the scripts; default: all."})
    split_ratios: dict | str | None = field(default=None, metadata={"help": "JSON; default 80/10/10."})
    llm_base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible endpoint for llm scripts."})
    llm_model: str | None = None
    llm_token_env: str = field(default="HF_TOKEN", metadata={"help": "Environment variable holding the LLM key."})
    llm_max_attempts: int = 3

    # Speech
    backend: str = field(default="espeak", metadata={"help": "espeak (offline) | elevenlabs"})
    voices: list[str] | None = field(default=None, metadata={"help": "Voices rotated over the clips."})
    concurrency: int = field(default=2, metadata={"help": "Clips synthesised at once."})
    max_attempts: int = field(default=4, metadata={"help": "Tries per clip on rate limits, errors, bad audio."})
    retry_base_delay_s: float = 1.0
    request_timeout_s: float = 120.0
    render_overrides: dict | str | None = field(default=None, metadata={"help": "JSON: espeak-ng tag renderings."})
    elevenlabs_model: str = "eleven_v3"
    elevenlabs_base_url: str | None = field(default=None, metadata={"help": "API base URL (default: ElevenLabs)."})
    output_format: str = "mp3_44100_128"
    min_duration_s: float = 0.3

    # Dataset and Hub
    pretty_name: str = "Evoxtral tagged speech"
    license: str = "apache-2.0"
    push_to_hub: bool = False
    hub_repo_id: str | None = None
    private: bool = True
    dry_run: bool = field(default=False, metadata={"help": "Write the folder a push would upload, push nothing."})

    def __post_init__(self):
        self.slice_fractions = _as_dict(self.slice_fractions)
        self.split_ratios = _as_dict(self.split_ratios)
        self.render_overrides = _as_dict(self.render_overrides) or {}
        if isinstance(self.tags, str):
            self.tags = [self.tags]
        if self.source not in DATA_SOURCES:
            raise ValueError(f"source {self.source!r}: use {', '.join(DATA_SOURCES)}")
        if self.source == "audio_folder" and not self.audio_dir:
            raise ValueError("source: audio_folder needs audio_dir")
        if self.source == "hub" and not self.dataset_name:
            raise ValueError("source: hub needs dataset_name")
        if isinstance(self.dataset_splits, str):
            self.dataset_splits = [self.dataset_splits]
        if self.script_source not in SCRIPT_SOURCES:
            raise ValueError(f"script_source {self.script_source!r}: use templates, random_words, llm or file")
        if self.script_source == "file" and not self.scripts_file:
            raise ValueError("script_source: file needs scripts_file")
        if self.push_to_hub and not self.hub_repo_id:
            raise ValueError("push_to_hub needs hub_repo_id")


# --- Facial emotion recognition --------------------------------------------------------------------------------------


@dataclass
class FerDataArguments:
    dataset_name: str = field(
        metadata={"help": "A local image folder (<dir>/<split>/<class>/*.jpg) or a Hub dataset id."}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration."})
    make_demo_dataset: bool = field(
        default=False,
        metadata={
            "help": "Build the pipeline-check image folder from bundled photos at dataset_name when it is "
            "missing (not a facial expression dataset)."
        },
    )
    image_column: str = field(default="image")
    label_column: str = field(default="label")
    train_split: str = field(default="train")
    validation_split: str = field(default="validation")
    test_split: str = field(default="test")
    holdout_size: float = field(
        default=0.1, metadata={"help": "Fraction of train held out for a missing validation or test split."}
    )
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None)
    augment: bool = field(default=True, metadata={"help": "Augment training images (crop, flip, rotate, jitter)."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where datasets caches the loaded splits."})


@dataclass
class FerModelArguments:
    model_name_or_path: str | None = field(
        default=FER_PRETRAINED_BACKBONE,
        metadata={"help": "Backbone to fine-tune; random-init XXS when unreachable (offline) or left empty."},
    )
    require_pretrained: bool = field(
        default=False, metadata={"help": "Fail instead of falling back to random init when the weights are missing."}
    )
    calibrate_batchnorm_batches: int = field(
        default=0,
        metadata={
            "help": "Before each evaluation, save and the end of training, re-estimate the BatchNorm statistics "
            "on this many training batches (0: keep the running averages)."
        },
    )


@dataclass
class FerOnnxArguments:
    checkpoint_dir: str = field(metadata={"help": "A checkpoint folder saved by recipes/fer.py."})
    onnx_dir: str = field(metadata={"help": "Where model.onnx, model_quantized.onnx and parity.json go."})
    export_venv: str = field(default=FER_EXPORT_VENV, metadata={"help": "The exporter's own virtualenv."})
    export_requirements: list[str] = field(
        default_factory=lambda: list(FER_EXPORT_REQUIREMENTS),
        metadata={"help": "What the exporter's virtualenv installs (optimum-onnx pins transformers < 4.58)."},
    )
    atol: float = field(default=1e-4, metadata={"help": "Largest accepted |ONNX - PyTorch| logit difference."})
    quantize: bool = field(default=True, metadata={"help": "Also write and check an int8 dynamic quantisation."})
