"""The run report (reporting/report.py, report_page.py, cli/report.py): one self-contained page per run,
and `vaekit evaluate` saving its figures in the run for `info` and the report."""

from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaekit.cli import main

SECTIONS = ["Settings", "Data", "Loss curves", "Test figures", "Samples", "Reconstructions", "Interpolations",
            "Traversals", "KL per dimension", "Latent space", "Manifold"]
LOADING_TAGS = {"script", "link", "iframe", "object", "embed", "video", "audio", "source", "frame", "base"}
PNG_URI = "data:image/png;base64,"


class Page(HTMLParser):
    """What a report test looks at: headings, images (alt, src), every tag and every attribute."""

    def __init__(self, text: str):
        super().__init__()
        self.headings: list[str] = []
        self.images: list[tuple[str, str]] = []
        self.tags: set[str] = set()
        self.attributes: list[tuple[str, str]] = []
        self._in_heading = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes += [(name, value or "") for name, value in attrs]
        self._in_heading = tag == "h2"
        if tag == "img":
            found = dict(attrs)
            self.images.append((found.get("alt", ""), found.get("src", "")))

    def handle_endtag(self, tag):
        self._in_heading = self._in_heading and tag != "h2"

    def handle_data(self, data):
        if self._in_heading:
            self.headings.append(data.strip())


def check_self_contained(text: str) -> Page:
    """Every picture an inline PNG that opens; nothing that would load from elsewhere."""
    page = Page(text)
    assert '<meta name="viewport"' in text
    assert not page.tags & LOADING_TAGS, page.tags & LOADING_TAGS
    for alt, source in page.images:
        assert source.startswith(PNG_URI), (alt, source[:40])
        picture = Image.open(io.BytesIO(base64.b64decode(source[len(PNG_URI):], validate=True)))
        assert picture.format == "PNG" and min(picture.size) > 50, alt
    for name, value in page.attributes:
        assert "http://" not in value and "https://" not in value, (name, value[:80])
        if name in ("src", "href", "srcset", "poster", "action"):
            assert value.startswith((PNG_URI, "#")), (name, value[:80])
    assert "url(" not in text and "@import" not in text  # no style that fetches
    return page


def test_the_report_of_a_digits_run_holds_every_section_inline(cli, digits_run, tmp_path):
    out = tmp_path / "report.html"
    result = cli("report", digits_run, "--out", out)
    assert result.code == 0, result.err
    assert str(out) in result.out
    text = out.read_text()
    page = check_self_contained(text)
    assert page.headings == SECTIONS
    alts = [alt for alt, _ in page.images]
    for picture in ("loss curves", "samples", "stochastic samples", "reconstructions", "interpolations",
                    "latent traversals", "KL", "latent scatter", "manifold"):
        assert picture in alts
    assert out.stat().st_size < 2_000_000
    assert "active units" in text and "best epoch" in text.lower()
    assert (digits_run / "report.html").is_file()  # training wrote its own at the end


def test_report_refuses_an_existing_out_without_overwrite(cli, digits_run, tmp_path):
    out = tmp_path / "kept.html"
    out.write_text("mine")
    result = cli("report", digits_run, "--out", out)
    assert result.code == 2 and "--overwrite" in result.err and out.read_text() == "mine"
    assert cli("report", digits_run, "--out", out, "--overwrite").code == 0
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_report_of_a_missing_run_is_one_line_with_status_2(cli, tmp_path):
    result = cli("report", tmp_path / "nowhere")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "no such run directory" in result.err


def write_table(path: Path, rows: int = 240) -> Path:
    generator = np.random.default_rng(0)
    height = generator.normal(170, 10, rows)
    weight = 0.9 * (height - 100) + generator.normal(0, 5, rows)
    lines = ["height_cm,weight_kg,age"] + [f"{h:.1f},{w:.1f},{a}" for h, w, a in
                                          zip(height, weight, generator.integers(18, 90, rows), strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_table_run_gets_histograms_and_column_errors_but_no_manifold(cli, tmp_path):
    source = write_table(tmp_path / "people <&>.csv")  # a name to escape
    run = tmp_path / "run"
    assert main(["train", "--data", str(source), "--out", str(run), "--epochs", "2", "--batch-size", "32",
                 "--quiet"]) == 0
    text = (run / "report.html").read_text()  # written by training
    page = check_self_contained(text)
    assert page.headings == [s for s in SECTIONS if s != "Manifold"]
    assert "histograms" in [alt for alt, _ in page.images]
    assert "RMSE" in text and all(f"<td>{name}</td>" in text for name in ("height_cm", "weight_kg", "age"))
    assert "people &lt;&amp;&gt;.csv" in text and "people <&>" not in text

    source.unlink()  # the data gone: what needs no inputs is still there, the rest says why not
    assert cli("report", run).code == 0
    page = check_self_contained((run / "report.html").read_text())
    assert {"Settings", "Loss curves", "Traversals"} <= set(page.headings)
    assert "Left out" in (run / "report.html").read_text()


def test_an_array_run_draws_sample_curves(cli, tmp_path):
    waves = np.sin(np.linspace(0, 6, 80)[None] + np.random.default_rng(0).uniform(0, 3, (240, 1)))
    np.save(tmp_path / "waves.npy", waves.astype(np.float32))
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "waves.npy"), "--out", str(run), "--epochs", "2",
                 "--batch-size", "32", "--quiet"]) == 0
    page = check_self_contained((run / "report.html").read_text())
    assert {"sample curves", "reconstruction curves"} <= {alt for alt, _ in page.images}
    assert "Manifold" not in page.headings


def test_evaluate_saves_its_figures_for_info_and_the_report(cli, digits_run, tmp_path):
    run = tmp_path / "digits"
    shutil.copytree(digits_run, run)  # the session's run stays as other tests expect it
    (run / "evaluation.json").unlink(missing_ok=True)  # what other tests' evaluations of the session's run saved
    for samples in ("5", "10"):
        result = cli("evaluate", run, "--importance-samples", samples, "--limit", "40", "--quiet")
        assert result.code == 0, result.err
    saved = json.loads((run / "evaluation.json").read_text())
    assert list(saved) == ["test (first 40), K=5", "test (first 40), K=10"]
    assert saved["test (first 40), K=10"]["examples"] == 40 and saved["test (first 40), K=10"]["nll"] > 0

    lines = [line for line in cli("info", run).out.splitlines() if line.startswith("evaluated")]
    assert len(lines) == 2 and "K = 10" in lines[1] and "bits/dim" in lines[1] and "active units" in lines[1]
    assert set(json.loads(cli("info", run, "--json").out)["evaluations"]) == set(saved)

    assert cli("report", run).code == 0
    text = (run / "report.html").read_text()
    assert "test (first 40), K=5" in text and f"{saved['test (first 40), K=10']['nll']:.2f}" in text
    assert "weights since changed" not in text

    saved["test (first 40), K=5"]["weights"] = "of-other-weights"  # as if a resume had since changed them
    (run / "evaluation.json").write_text(json.dumps(saved))
    assert "weights since changed" in cli("info", run).out.splitlines()[-2]


@pytest.mark.parametrize("name", ["report.html", "evaluation.json"])
def test_a_new_run_refuses_to_clobber_a_report_or_evaluations(cli, tmp_path, name):
    (tmp_path / name).write_text("{}")
    result = cli("train", "--data", "digits", "--out", tmp_path, "--epochs", "1", "--quiet")
    assert result.code == 2 and name in result.err


@pytest.mark.parametrize("width", [390, 1400], ids=["phone", "wide"])
def test_the_report_opens_from_a_file_url_with_every_image_loaded_and_nothing_fetched(
    cli, digits_run, tmp_path, browser, width
):
    """In a real chromium: from file://, every picture decodes (naturalWidth > 0), no request leaves the
    file, and the page fits the screen's width; a screenshot lies in the test's tmp dir."""
    out = tmp_path / "report.html"
    assert cli("report", digits_run, "--out", out).code == 0
    page = browser.new_page(viewport={"width": width, "height": 900})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(out.as_uri())
    page.wait_for_load_state("load")
    images = page.locator("img")
    for index in range(images.count()):  # the pictures load lazily, as they come into view
        images.nth(index).scroll_into_view_if_needed()
    page.wait_for_function("[...document.images].every(image => image.complete)")
    sizes = page.eval_on_selector_all("img", "images => images.map(image => [image.complete, image.naturalWidth])")
    assert len(sizes) >= 8 and all(complete and natural > 0 for complete, natural in sizes), sizes
    assert requests == [out.as_uri()], requests  # the page itself, and nothing else
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.screenshot(path=str(tmp_path / f"report-{width}.png"), full_page=True)
    page.close()
