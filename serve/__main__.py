"""``python -m serve [--model M] [--adapter A] [--port P] ...``: run the transcription API with uvicorn."""

import uvicorn

from evoxtral.serving import settings_from_cli
from evoxtral.serving.app import uvicorn_log_config
from serve.app import create_app


def main(argv=None):
    settings = settings_from_cli(argv)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=uvicorn_log_config(settings.log_level),
    )


if __name__ == "__main__":
    main()
