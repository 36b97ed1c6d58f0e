"""The app that `python -m serve` and `uvicorn serve.app:app` run mounts POST /fer next to transcription."""

from fastapi.testclient import TestClient


def test_entry_app_mounts_fer_and_answers_503_until_a_model_is_configured(monkeypatch, tmp_path):
    monkeypatch.delenv("EVOXTRAL_FER_MODEL", raising=False)
    import serve.app
    from evoxtral.serving.fer_router import get_fer_classifier

    get_fer_classifier.cache_clear()
    app = serve.app.create_app()
    paths = set(app.openapi()["paths"])
    assert {"/fer", "/transcribe", "/v1/audio/transcriptions", "/health"} <= paths
    # no lifespan: the transcription model is not loaded, the FER route does not need it
    client = TestClient(app)
    response = client.post("/fer", files={"file": ("face.png", b"\x89PNG\r\n\x1a\n", "image/png")})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "fer_not_configured"
