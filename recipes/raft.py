"""RAFT: sample k transcripts per training clip, keep the best by reward, fine-tune the SFT adapter on them.

    accelerate launch --num_processes 1 recipes/raft.py --config recipes/tiny/raft.yaml          # offline, CPU
    accelerate launch --config_file accelerate_configs/single_gpu.yaml \\
        recipes/raft.py --config recipes/voxtral-mini-3b/raft/config.yaml --rounds 2                   # Voxtral-Mini-3B

Every setting can be overridden on the command line; see recipes/RAFT.md. The logic lives in evoxtral/training/raft/.
"""

import sys

from evoxtral.configs import make_raft_parser
from evoxtral.publishing.recipe import recipe_from_argv
from evoxtral.training.raft.rounds import run_raft


def main(raft_args, training_args, model_args, sft_args, recipe=None):
    return run_raft(raft_args, training_args, model_args, sft_args, recipe=recipe)


def make_parser():
    return make_raft_parser()


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config(), recipe=recipe_from_argv(sys.argv[1:]))
