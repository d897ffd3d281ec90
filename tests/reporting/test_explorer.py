"""vaekit.reporting.explorer and `vaekit explore`: every route over HTTP, every bad request refused with a
one-line reason while the server goes on answering, and the page itself in Debian's chromium."""

from __future__ import annotations

import io
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaekit.errors import UserError
from vaekit.model.latent_paths import ACTIVE_KL
from vaekit.reporting.explorer import Explorer
from vaekit.reporting.explorer_server import MAX_BODY_BYTES, make_server
from vaekit.reporting.pictures import image_grid, png_bytes
from vaekit.runs.trained import TrainedVAE

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SERVING = re.compile(r"serving .+ at (http://127\.0\.0\.1:(\d+)/) — Ctrl-C stops it")




@contextmanager
def serving(explorer: Explorer) -> Iterator[str]:
    """The explorer's server in a thread on a free port; yields its URL."""
    server = make_server(explorer, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def digits_explorer(digits_run) -> Explorer:
    return Explorer(TrainedVAE(digits_run))


@pytest.fixture(scope="module")
def url(digits_explorer) -> Iterator[str]:
    with serving(digits_explorer) as base:
        yield base


def call(url: str, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request, 4xx and 5xx included."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def post(url: str, route: str, payload: object) -> tuple[int, str, bytes]:
    return call(url + route, "POST", json.dumps(payload).encode(), {"Content-Type": "application/json"})


def info(url: str) -> dict:
    status, _, body = call(url + "api/info")
    assert status == 200
    return json.loads(body)


# --- the routes ---------------------------------------------------------------------------------------


def test_the_server_listens_on_loopback_only(url):
    assert url.startswith("http://127.0.0.1:")


def test_the_page_is_html_asking_nothing_outside(url):
    status, content_type, body = call(url)
    assert status == 200 and content_type.startswith("text/html") and b"<script>" in body
    assert not re.search(rb"(src|href)=\"(https?:)?//", body), "the page must not load anything from elsewhere"
    assert call(url + "index.html")[2] == body


def test_info_lists_the_active_dimensions_most_kl_first(url, digits_explorer):
    described = info(url)
    kl = np.array(described["kl"])
    shown = [dim["index"] for dim in described["dims"]]
    active = [d for d in np.argsort(-kl, kind="stable") if kl[d] > ACTIVE_KL]
    assert shown == (active or list(np.argsort(-kl, kind="stable")[:2]))
    assert described["kind"] == "image" and described["drawable"] and described["latent_dim"] == 20
    assert described["examples"] == 16 == len(described["labels"]) and all(described["labels"])


def test_the_explorer_shows_the_two_of_most_kl_when_none_is_active():
    from vaekit.reporting.explorer import shown_dimensions

    assert shown_dimensions(np.array([0.001, 0.004, 0.002])) == [1, 2]
    assert shown_dimensions(np.array([0.5, 0.004, 0.02])) == [0, 2]


def test_examples_come_as_thumbnails_and_values(url, digits_explorer):
    status, content_type, body = call(url + "api/example/3.png")
    assert status == 200 and content_type == "image/png" and body.startswith(PNG_MAGIC)
    values = json.loads(call(url + "api/example/3.json")[2])["values"]
    assert values == digits_explorer.strip[3].reshape(-1).tolist()


def test_decode_draws_the_run_s_decoding_and_follows_z(url, digits_explorer):
    trained, top = digits_explorer.trained, info(url)["dims"][0]["index"]
    z = np.zeros(20)
    _, content_type, at_zero = post(url, "api/decode", {"z": z.tolist()})
    z[top] = 3.0
    _, _, moved = post(url, "api/decode", {"z": z.tolist()})
    assert content_type == "image/png" and at_zero != moved
    assert moved == png_bytes(image_grid(trained.decode(z[None].astype(np.float32))))


def test_encode_gives_the_posterior_mean_of_a_strip_example(url, digits_explorer):
    status, _, body = post(url, "api/encode", {"index": 5})
    loc, scale = digits_explorer.trained.encode(digits_explorer.strip[5:6])
    answer = json.loads(body)
    assert status == 200 and np.allclose(answer["loc"], loc[0]) and np.allclose(answer["scale"], scale[0])


@pytest.mark.parametrize("path", ["linear", "slerp"])
def test_interpolate_gives_a_strip_of_steps(url, digits_explorer, path):
    status, _, body = post(url, "api/interpolate", {"from": 0, "to": 7, "steps": 6, "path": path})
    picture = Image.open(io.BytesIO(body))
    one = Image.open(io.BytesIO(call(url + "api/example/0.png")[2]))
    assert status == 200 and picture.height == one.height and picture.width > 5 * one.width


def test_a_table_run_answers_in_numbers(table_run):
    with serving(Explorer(TrainedVAE(table_run))) as base:
        described = info(base)
        assert described["kind"] == "table" and not described["drawable"] and described["columns"][0] == "height"
        decoded = json.loads(post(base, "api/decode", {"z": [0.5, -1.0]})[2])
        assert decoded["columns"] == ["height", "weight", "noise"] and len(decoded["values"][0]) == 3
        path = json.loads(post(base, "api/interpolate", {"from": 0, "to": 1, "steps": 4})[2])
        assert np.array(path["values"]).shape == (4, 3)
        status, _, reason = call(base + "api/example/0.png")
        assert status == 404 and b"/api/example/0.json" in reason


# --- what is refused ----------------------------------------------------------------------------------

Z = [0.0] * 20
BAD_REQUESTS = [
    # (name, method, route, body, extra headers, status, words of the reason)
    ("unknown route", "GET", "nope", None, {}, 404, "no such route; the routes are"),
    ("unknown example", "GET", "api/example/16.png", None, {}, 404, "the strip holds examples 0 to 15"),
    ("GET of a POST route", "GET", "api/decode", None, {}, 405, "this route takes POST"),
    ("POST of a GET route", "POST", "api/info", b"{}", {}, 405, "this route takes GET"),
    ("PUT", "PUT", "api/decode", b"{}", {}, 405, "this route takes POST"),
    ("not JSON", "POST", "api/decode", b"{z: 1", {}, 400, "not JSON"),
    ("no body", "POST", "api/decode", b"", {}, 400, "not JSON"),
    ("not UTF-8", "POST", "api/decode", b"\xff\xfe", {}, 400, "not UTF-8"),
    ("not an object", "POST", "api/decode", b"[1, 2]", {}, 400, "must be a JSON object"),
    ("nested too deeply", "POST", "api/decode", b"[" * 60000, {}, 400, "nested too deeply"),
    ("z missing", "POST", "api/decode", b"{}", {}, 400, 'the field "z" is missing'),
    ("unknown field", "POST", "api/decode", json.dumps({"z": Z, "zz": 1}).encode(), {}, 400, 'unknown field "zz"'),
    ("z too short", "POST", "api/decode", b'{"z": [0, 0, 0]}', {}, 400, "has 3 numbers; this run's codes have 20"),
    ("z not a list", "POST", "api/decode", b'{"z": 0}', {}, 400, "must be a list of 20 numbers"),
    ("z of strings", "POST", "api/decode", json.dumps({"z": ["0"] * 20}).encode(), {}, 400, "list of 20 numbers"),
    ("z of booleans", "POST", "api/decode", json.dumps({"z": [True] * 20}).encode(), {}, 400, "list of 20 numbers"),
    ("NaN", "POST", "api/decode", b'{"z": [NaN' + b", 0" * 19 + b"]}", {}, 400, "NaN, which is not a number"),
    ("-Infinity", "POST", "api/decode", b'{"z": [-Infinity' + b", 0" * 19 + b"]}", {}, 400, "-Infinity"),
    ("1e999", "POST", "api/decode", b'{"z": [0, 1e999' + b", 0" * 18 + b"]}", {}, 400, "z[1] is inf"),
    ("|z| > 10", "POST", "api/decode", json.dumps({"z": [0] * 19 + [-10.5]}).encode(), {}, 400, "z[19] = -10.5"),
    ("index too big", "POST", "api/encode", b'{"index": 16}', {}, 400, '"index" 16: use 0 to 15'),
    ("index negative", "POST", "api/encode", b'{"index": -1}', {}, 400, '"index" -1: use 0 to 15'),
    ("index a string", "POST", "api/encode", b'{"index": "3"}', {}, 400, "must be a whole number"),
    ("index a fraction", "POST", "api/encode", b'{"index": 1.5}', {}, 400, "must be a whole number"),
    ("one step", "POST", "api/interpolate", b'{"from": 0, "to": 1, "steps": 1}', {}, 400, '"steps" 1: use 2 to 32'),
    ("33 steps", "POST", "api/interpolate", b'{"from": 0, "to": 1, "steps": 33}', {}, 400, '"steps" 33'),
    ("unknown path", "POST", "api/interpolate", b'{"from": 0, "to": 1, "steps": 4, "path": "spline"}', {}, 400,
     "use one of linear, slerp"),
    ("to out of range", "POST", "api/interpolate", b'{"from": 0, "to": 99, "steps": 4}', {}, 400, '"to" 99'),
    ("body too large", "POST", "api/decode", b" " * (MAX_BODY_BYTES + 1), {}, 413, f"at most {MAX_BODY_BYTES}"),
    ("Content-Length not a number", "POST", "api/decode", b"{}", {"Content-Length": "two"}, 400,
     "is not a number of bytes"),
    ("another Host (DNS rebinding)", "GET", "api/info", None, {"Host": "evil.example:80"}, 403,
     "answers only http://127.0.0.1:"),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS])
def test_a_bad_request_gets_its_status_and_a_one_line_reason(url, case):
    _, method, route, body, headers, status, words = case
    got, content_type, reason = call(url + route, method, body, headers)
    text = reason.decode()
    assert (got, words in text) == (status, True), text
    assert content_type.startswith("text/plain") and text.endswith("\n") and "\n" not in text[:-1]
    assert "Traceback" not in text
    assert info(url)["examples"] == 16, "the server must go on answering"


def test_a_body_without_content_length_is_refused(url):
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = connection.makefile("rb").read().decode()
    assert answer.startswith("HTTP/1.0 411") and answer.endswith("with a Content-Length header\n")


def test_http_server_s_own_refusals_are_one_plain_line_too(url):
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"BREW /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = connection.makefile("rb").read().decode()
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.0 501") and "text/plain" in head and body == "501 Unsupported method ('BREW')\n"
    assert info(url)["examples"] == 16


def test_a_failure_of_ours_is_a_500_in_one_line_logged_and_survived(url, digits_explorer, monkeypatch, caplog):
    def broken(z, label=None):
        raise RuntimeError("the decoder fell over\nwith a second line")

    monkeypatch.setattr(digits_explorer, "decode", broken)
    status, _, reason = post(url, "api/decode", {"z": Z})
    assert status == 500 and reason == b"internal error (RuntimeError: the decoder fell over); the server's log has " \
                                       b"the traceback\n"
    assert "explore: POST /api/decode failed" in caplog.text and "Traceback" in caplog.text
    assert info(url)["examples"] == 16


def test_a_busy_port_is_one_line(digits_explorer, digits_run, cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=rf"--port {port}: already in use .* --port 0 for any free one"):
            make_server(digits_explorer, port)
        result = cli("explore", digits_run, "--port", port)
    assert result.code == 2 and result.err.count("\n") == 1 and "already in use" in result.err


def test_a_port_out_of_range_is_a_usage_error(cli, digits_run):
    result = cli("explore", digits_run, "--port", "70000")
    assert result.code == 2 and "is not a port" in result.err


# --- the page, in chromium ----------------------------------------------------------------------------


@contextmanager
def explore_command(run_dir: Path) -> Iterator[str]:
    """`python -m vaekit explore RUN --port 0` as a real process; yields its URL; Ctrl-C must end it with 0."""
    process = subprocess.Popen([sys.executable, "-m", "vaekit", "explore", str(run_dir), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
        found = SERVING.fullmatch(first.strip())
        assert found, f"no URL printed: {first!r} {process.stderr.read() if process.poll() is not None else ''}"
        yield found[1]
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        assert (process.returncode, out, err) == (0, "stopped\n", "")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@contextmanager
def page_of(browser, url: str) -> Iterator:
    """A page opened on the explorer, ready; on leaving, no script error and no request outside the server."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        yield page
        assert errors == []
        assert [r for r in requests if not r.startswith((url, "data:"))] == []
    finally:
        page.close()


def slider_values(page) -> list[float]:
    return [float(value) for value in page.eval_on_selector_all("#sliders input", "inputs => inputs.map(i => i.value)")]


def test_the_page_decodes_as_a_slider_moves_and_encodes_a_clicked_example(browser, digits_run, tmp_path):
    with explore_command(digits_run) as url, page_of(browser, url) as page:
        shown = info(url)["dims"]
        assert page.locator("#sliders input[type=range]").count() == len(shown)
        before = page.get_attribute("#decoded", "src")
        assert before.startswith("data:image/png;base64,")
        page.locator("#sliders input").first.fill("3")
        page.wait_for_function("before => document.querySelector('#decoded').src !== before", arg=before)
        moved = page.get_attribute("#decoded", "src")
        assert slider_values(page) == [3.0] + [0.0] * (len(shown) - 1)

        page.locator(".example").nth(4).click()
        page.wait_for_function("moved => document.querySelector('#decoded').src !== moved", arg=moved)
        loc = json.loads(post(url, "api/encode", {"index": 4})[2])["loc"]
        expected = [min(3.0, max(-3.0, loc[dim["index"]])) for dim in shown]
        assert np.allclose(slider_values(page), expected, atol=1e-6) and slider_values(page)[0] != 3.0

        page.locator(".example").nth(9).click()
        page.wait_for_selector("#interpolate:not([disabled])")
        page.click("#interpolate")
        page.wait_for_selector("#path-output img")
        assert page.get_attribute("#path-output img", "src").startswith("data:image/png;base64,")
        page.fill("#steps", "50")
        page.click("#interpolate")
        page.wait_for_selector("#status.error")
        assert '"steps" 50: use 2 to 32' in page.inner_text("#status")
        page.screenshot(path=str(tmp_path / "explore-digits.png"), full_page=True)
    assert (tmp_path / "explore-digits.png").read_bytes().startswith(PNG_MAGIC)


def test_the_page_of_a_table_run_shows_numbers(browser, table_run, tmp_path):
    with explore_command(table_run) as url, page_of(browser, url) as page:
        before = page.inner_text("#decoded-values")
        assert "height" in before and "weight" in before
        page.locator("#sliders input").first.fill("-2.5")
        page.wait_for_function("before => document.querySelector('#decoded-values').innerText !== before", arg=before)
        page.locator(".example").nth(0).click()
        page.locator(".example").nth(1).click()
        page.click("#interpolate")
        page.wait_for_selector("#path-output table")
        assert page.locator("#path-output tr").count() == 1 + 8  # the header and the default 8 steps
        page.screenshot(path=str(tmp_path / "explore-table.png"), full_page=True)
    assert (tmp_path / "explore-table.png").read_bytes().startswith(PNG_MAGIC)


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory) -> Path:
    from vaekit.cli import main

    out = tmp_path_factory.mktemp("runs") / "digits-c"
    assert main(["train", "--data", "digits", "--conditional", "--latent-dim", "2", "--epochs", "5", "--quiet",
                 "--out", str(out)]) == 0
    return out


def test_a_conditional_run_decodes_the_class_it_is_asked_for(conditional_run):
    explorer = Explorer(TrainedVAE(conditional_run))
    with serving(explorer) as base:
        assert info(base)["classes"] == [str(i) for i in range(10)]
        images = {label: post(base, "api/decode", {"z": [0, 0], "label": label})[2] for label in (0, 7)}
        assert images[0] != images[7] and images[0].startswith(PNG_MAGIC)
        assert post(base, "api/decode", {"z": [0, 0]})[2] == images[0]  # by default the first class
        encoded = json.loads(post(base, "api/encode", {"index": 3})[2])
        assert encoded["label"] == int(explorer.strip_y[3])
        status, _, reason = post(base, "api/decode", {"z": [0, 0], "label": 10})
        assert status == 400 and '"label"' in reason.decode()
    with serving(Explorer(TrainedVAE(conditional_run))) as base:
        assert post(base, "api/interpolate", {"from": 0, "to": 5, "steps": 3})[0] == 200


def test_the_page_of_a_conditional_run_has_a_class_selector(browser, conditional_run):
    with explore_command(conditional_run) as url, page_of(browser, url) as page:
        assert page.locator("#label option").count() == 10 and page.is_visible("#label")
        before = page.get_attribute("#decoded", "src")
        page.select_option("#label", "7")
        page.wait_for_function("before => document.querySelector('#decoded').src !== before", arg=before)
        page.locator(".example").nth(2).click()
        own = json.loads(post(url, "api/encode", {"index": 2})[2])["label"]
        page.wait_for_function("own => document.querySelector('#label').value === String(own)", arg=own)
