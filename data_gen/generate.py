"""Generate a tagged expressive-speech dataset: `python data_gen/generate.py --config data_gen/configs/tiny.yaml`.

Flags override the YAML (e.g. `--num_clips 200 --backend elevenlabs --dry_run true`); see data_gen/README.md.
"""

import datasets
from trl import TrlParser

from evoxtral.configs import DataGenArguments
from evoxtral.data.generation.pipeline import run


def main(args: DataGenArguments) -> None:
    datasets.disable_progress_bars()  # the run shows its own bar; the per-split save bars are noise here
    print(run(args).render())


if __name__ == "__main__":
    (arguments,) = TrlParser(DataGenArguments).parse_args_and_config()
    main(arguments)
