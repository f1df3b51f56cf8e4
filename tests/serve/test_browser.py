"""The web page in a real browser: Playwright driving Debian's Chromium against a live server.

Skipped (with the reason) when the ``playwright`` package or ``/usr/bin/chromium`` is missing;
``make test`` installs Chromium with apt-get when it runs as root. Playwright never
downloads a browser here: it launches the system one by path.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from aigi.serve.app import create_app
from aigi.serve.settings import ServeSettings
from serve_helpers import png_bytes, running_server

CHROMIUM = Path(os.environ.get("AIGI_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install playwright)")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set AIGI_CHROMIUM)")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_upload_through_the_page_shows_verdict_and_heat_map(browser, tiny_model_dir, tmp_path):
    small = tmp_path / "small.png"
    small.write_bytes(png_bytes(28, 28, seed=21))  # smaller than the 32 px input: no heat map
    large = tmp_path / "large.png"
    large.write_bytes(png_bytes(160, 112, seed=22))  # 5 x 4 crops of 32 px
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not an image")

    app = create_app(tiny_model_dir, ServeSettings())
    with running_server(app) as base:
        import httpx

        api = httpx.post(f"{base}/v1/detect", files=[("files", (p.name, p.read_bytes())) for p in (small, large)]).json()
        expected = {r["filename"]: r for r in api["results"]}

        page = browser.new_page(viewport={"width": 1100, "height": 760})
        requests: list[str] = []
        page.on("request", lambda req: requests.append(req.url))
        console_errors: list[str] = []
        page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
        page.goto(base + "/")
        page.wait_for_function("document.querySelector('#model').textContent.includes('npr')")
        page.set_input_files("#file", [str(small), str(large), str(broken)])
        page.wait_for_selector("[data-testid=result][data-state=done][data-filename='small.png']", timeout=15_000)
        page.wait_for_selector("[data-testid=result][data-filename='large.png'][data-heatmap=done]", timeout=15_000)
        page.wait_for_selector("[data-testid=result][data-state=error][data-filename='broken.png']", timeout=15_000)

        for name in ("small.png", "large.png"):
            card = page.locator(f"[data-testid=result][data-filename='{name}']")
            verdict = card.locator("[data-testid=verdict]").inner_text().strip().lower()
            assert verdict == expected[name]["verdict"]
            assert float(card.get_attribute("data-p-fake")) == pytest.approx(expected[name]["p_fake"], abs=1e-6)
            assert f"{expected[name]['p_fake']:.4f}" in card.locator("[data-testid=score]").inner_text()
        large_card = page.locator("[data-testid=result][data-filename='large.png']")
        assert large_card.locator("canvas.overlay").get_attribute("data-cells") == "4x5"
        # the overlay really is painted: translucent pixels in the middle of the canvas
        alpha = page.evaluate(
            """() => { const c = document.querySelector("[data-filename='large.png'] canvas.overlay");
                       return c.getContext('2d').getImageData(c.width >> 1, c.height >> 1, 1, 1).data[3]; }"""
        )
        assert 60 <= alpha <= 200
        small_card = page.locator("[data-testid=result][data-filename='small.png']")
        assert small_card.get_attribute("data-heatmap") is None
        broken_text = page.locator("[data-testid=result][data-filename='broken.png']").inner_text()
        assert "not_an_image" in broken_text
        assert "3 image(s)" in page.locator("[data-testid=summary]").inner_text()

        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if os.environ.get("AIGI_SCREENSHOT_DIR"):  # keep a copy to look at
            shutil.copy(shot, Path(os.environ["AIGI_SCREENSHOT_DIR"]) / "serve-page.png")
        page.close()

    assert requests and all(u.startswith(base) or u.startswith(("blob:", "data:")) for u in requests), requests
    assert not console_errors, console_errors
