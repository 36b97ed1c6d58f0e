"""The learning check: does a model trained with these recipes hear the tags? (recipes/learning_check/README.md)

    python recipes/learning_check.py --scale tiny      # CPU smoke check of the whole chain, a few minutes
    python recipes/learning_check.py --scale full      # the experiment, one GPU
    python recipes/learning_check.py --config recipes/learning_check/full/learning_check.yaml --output_dir x

Runs data -> model -> SFT -> RAFT -> eval as the commands a user runs, skipping stages whose outputs exist, and
writes results.md, results.json and learning_check.png. Command-line flags override the YAML.
"""

import sys

from evoxtral.learning_check.run import parse_learning_check_args, run_learning_check
from evoxtral.utils.stages import StageError

if __name__ == "__main__":
    try:
        run_learning_check(parse_learning_check_args())
    except StageError as error:
        sys.exit(f"\n{error}")
