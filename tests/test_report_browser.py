"""report.html in a real browser: headless Chromium (Debian's `chromium`) driven by playwright.

Checks what a reader sees: the verdict, the ranked tables, every figure decoded, sorting by a click,
and that the page makes no request beyond its own file (everything is inline or a data: URI).
Skipped, with the reason, where playwright or /usr/bin/chromium is missing (`apt-get install chromium`).
"""

import shutil
from pathlib import Path

import pytest

from cnnbench.cli import main

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

STUDY = """
name = "browser"
description = "<img src=x> & <b>not bold</b>"
seeds = [0, 1, 2]
epochs = 2
batch_size = 128
dataset = "digits"
model = "digits_cnn"
[grid]
loss = ["categorical_crossentropy", "mse", "categorical_hinge"]
"""


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        except Exception as e:  # a browser that cannot start here (no sandbox support, missing libraries)
            pytest.skip(f"Chromium at {CHROMIUM} does not start: {str(e).splitlines()[0]}")
        yield b
        b.close()


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    spec = root / "study.toml"
    spec.write_text(STUDY)
    assert main(["run", str(spec), "-o", str(root / "study"), "--workers", "1", "-q"]) == 0
    return root / "study" / "report" / "report.html"


def test_report_in_chromium(browser, report_html):
    page = browser.new_page()
    url = report_html.resolve().as_uri()
    outside = []

    def route(r):
        if r.request.url == url or r.request.url.startswith("data:"):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_load_state("load")

    assert page.locator("#verdict").inner_text().startswith("Verdict. Best by highest mean test accuracy")
    assert page.locator("table.sortable").count() >= 3  # ranking, marginal, environment, ...
    images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.alt, i.complete, i.naturalWidth])")
    assert len(images) >= 3 and all(done and width > 0 for _, done, width in images), images
    assert page.locator("text=<b>not bold</b>").count() >= 1  # the description as text, not markup
    assert page.locator("b", has_text="not bold").count() == 0
    assert page.locator("img[src='x']").count() == 0

    ranking = page.locator("#cell-1 ~ div table").first
    column = next(i for i, h in enumerate(ranking.locator("th").all_inner_texts()) if "mean ± std" in h)

    def means():
        return [float(x) for x in ranking.locator(f"tbody tr td:nth-child({column + 1})").evaluate_all(
            "tds => tds.map(td => td.dataset.sort)")]

    assert means() == sorted(means(), reverse=True)  # as written: best first
    ranking.locator("th").nth(column).click()
    assert means() == sorted(means())
    ranking.locator("th").nth(column).click()
    assert means() == sorted(means(), reverse=True)
    assert not outside, outside
    assert not errors, errors
    page.screenshot(path=str(report_html.with_name("screenshot.png")), full_page=True)
