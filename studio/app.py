"""The Evoxtral Studio entry point: ``python studio/app.py`` (a Hugging Face Space's app file) or
``python -m studio --model M --adapter A --port P`` (what `make studio` runs). Flags and EVOXTRAL_* variables are
the server's (python -m serve --help lists them)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file from a Space or a clone

from evoxtral.serving.settings import settings_from_cli  # noqa: E402
from evoxtral.studio.app import launch_studio  # noqa: E402


def main(argv=None):
    launch_studio(settings_from_cli(argv, prog="python -m studio"))


if __name__ == "__main__":
    main()
