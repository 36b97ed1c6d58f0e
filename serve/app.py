"""The ASGI app for uvicorn (``uvicorn serve.app:app``), configured from ``EVOXTRAL_*`` environment variables.

Building the app is cheap: the model loads when the server starts (the app's lifespan), not on import.
"""

from evoxtral.serving import ServeSettings
from evoxtral.serving import create_app as create_transcription_app
from evoxtral.serving.fer_router import router as fer_router

# Routers mounted next to the transcription API. POST /fer is always there and answers 503 until EVOXTRAL_FER_MODEL
# (--fer-model) names an exported model (make fer-onnx). More can be added at run time with --routers /
# EVOXTRAL_ROUTERS ("module:attribute").
ROUTERS = [fer_router]


def create_app(settings: ServeSettings | None = None):
    return create_transcription_app(settings or ServeSettings.from_env(), routers=ROUTERS)


app = create_app()
