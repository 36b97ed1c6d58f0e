"""RAFT: sample k transcripts per training clip, keep the best by reward, fine-tune the SFT adapter on them.

    accelerate launch --num_processes 1 recipes/raft.py --config recipes/tiny/raft.yaml
    accelerate launch recipes/raft.py --config recipes/evoxtral/raft/config.yaml --rounds 2

Command-line flags override the YAML.
"""

from trl import SFTConfig, TrlParser

from evoxtral.raft import RaftArguments, run_raft


def make_parser() -> TrlParser:
    return TrlParser((RaftArguments, SFTConfig))


if __name__ == "__main__":
    raft_args, training_args = make_parser().parse_args_and_config()
    run_raft(raft_args, training_args)
