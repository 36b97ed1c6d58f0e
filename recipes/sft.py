"""Supervised fine-tuning of Voxtral for expressive tagged transcription (TRL SFTTrainer, LoRA, NEFTune).

    accelerate launch --num_processes 1 recipes/sft.py --config recipes/tiny/sft.yaml   # offline, CPU
    accelerate launch --config_file accelerate_configs/single_gpu.yaml \\
        recipes/sft.py --config recipes/voxtral-mini-3b/sft/config_lora.yaml                  # Voxtral-Mini-3B, a GPU

Every setting can be overridden on the command line (`--learning_rate 1e-4 --max_steps 10`); see
recipes/SFT.md. The logic lives in evoxtral/training/sft.py.
"""

import sys

from evoxtral.configs import make_sft_parser
from evoxtral.publishing.recipe import recipe_from_argv
from evoxtral.training.sft import run_sft


def main(script_args, training_args, model_args, dataset_args, voxtral_args, recipe=None):
    return run_sft(script_args, training_args, model_args, dataset_args, voxtral_args, recipe=recipe)


def make_parser(subparsers=None, prog=None):
    return make_sft_parser(subparsers, prog=prog)


if __name__ == "__main__":
    parser = make_parser()
    main(*parser.parse_args_and_config(), recipe=recipe_from_argv(sys.argv[1:]))
