"""`aigi serve`: options and environment reach the settings; a bad folder fails clearly."""

from __future__ import annotations

import uvicorn
from typer.testing import CliRunner

from aigi.cli import app


def test_serve_builds_the_app_from_options_and_environment(tiny_model_dir, monkeypatch):
    seen = {}

    def fake_run(web, host, port, **kwargs):
        seen.update(app=web, host=host, port=port)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    r = CliRunner().invoke(
        app, ["serve", "--model", str(tiny_model_dir), "--port", "8123", "--max-images", "3", "--max-upload-mb", "1.5"],
        env={"AIGI_SERVE_TOKEN": "from-env", "AIGI_SERVE_MAX_BATCH": "7", "AIGI_SERVE_MAX_IMAGES": "9"},
    )
    assert r.exit_code == 0, r.output
    settings = seen["app"].state.aigi.settings
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 8123)
    assert settings.token == "from-env" and settings.max_batch == 7
    assert settings.max_images == 3  # the option wins over the environment
    assert settings.max_upload_bytes == int(1.5 * 1024 * 1024)
    assert "serving npr" in r.output and "from-env" not in r.output


def test_serve_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    r = CliRunner().invoke(app, ["serve", "--model", str(tmp_path)])
    assert r.exit_code == 1 and "not a detector folder" in r.output
    r = CliRunner().invoke(app, ["serve", "--model", str(tmp_path)], env={"AIGI_SERVE_MAX_BATCH": "-1"})
    assert r.exit_code == 1 and "max_batch" in r.output
