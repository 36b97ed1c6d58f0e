"""The demo: data -> SFT -> RAFT -> eval offline on 2 CPU cores, then base vs SFT vs RAFT, each with its own audio
and with another clip's: does the trained model hear the tags?

    python recipes/demo.py                          # what `make demo` runs
    python recipes/demo.py --output_dir /tmp/demo   # everything under another root (make demo OUT=/tmp/demo)
    python recipes/demo.py --check                  # exit 1 when the targets are missed (CI: make demo CHECK=1)

A rerun skips the stages that are done, a stage killed midway resumes, and a stage whose recipe or input changed
starts again. The logic lives in evoxtral/demo.py.
"""

import sys

from trl import TrlParser

from evoxtral.configs import DemoArguments
from evoxtral.demo import run_demo
from evoxtral.utils.stages import StageError

if __name__ == "__main__":
    (demo_args,) = TrlParser((DemoArguments,)).parse_args_and_config()
    try:
        summary = run_demo(demo_args)
    except StageError as error:
        sys.exit(f"\n{error}")
    if demo_args.check and not summary["passed"]:
        sys.exit("\nThe demo missed its targets (see the verdict above).")
