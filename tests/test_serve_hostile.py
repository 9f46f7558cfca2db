"""`densekit serve` against a hostile client (issue 22): request heads too large, too many or too
slow, unparsable HTTP, requests of many large images, formats Pillow decodes while "opening",
EXIF orientation, the offline API pages and the drain timeout. Every answer is the documented
JSON and counted in /metrics; both backends share all of this (the ONNX one is checked too)."""
import io
import socket
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from datagen import blank_png, ico_holding
from test_serve import error_of, images, raw_request, sample, scrape, server  # noqa: F401  (images: a fixture)

HEAD = b"POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"


@pytest.fixture(scope="module")
def srv(digits_run, tmp_path_factory):
    with server(digits_run.dir, "--max-pixels", "40000", "--max-request-pixels", "100000", "--max-header-bytes", "8192",
                "--max-headers", "20", "--header-timeout", "1", tmp=tmp_path_factory.mktemp("hostile")) as proc:
        yield proc


@pytest.fixture(scope="module")
def onnx_srv(digits_onnx, tmp_path_factory):
    with server(digits_onnx, "--max-pixels", "40000", "--max-request-pixels", "100000", "--max-header-bytes", "8192",
                "--header-timeout", "1", tmp=tmp_path_factory.mktemp("hostile-onnx")) as proc:
        yield proc


def png(width: int, height: int, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def rotated_copy(data: bytes) -> bytes:
    """The image in ``data`` stored turned a quarter, with EXIF orientation 6 saying how to turn it back."""
    img = Image.open(io.BytesIO(data)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6   # "rotate 90 degrees clockwise to display"
    buf = io.BytesIO()
    img.save(buf, "PNG", exif=exif)
    return buf.getvalue()


def post(url, data, kind="image/png", **params):
    return httpx.post(f"{url}/v1/predict", content=data, headers={"content-type": kind}, params=params, timeout=60)


def test_a_head_over_the_byte_or_header_limit_is_431_json_and_counted(srv):
    before = scrape(srv.url)
    big = raw_request(srv.url, HEAD + b"X-Junk: " + b"a" * 20000 + b"\r\nContent-Length: 4\r\n\r\n", b"\x89PNG")
    assert big.startswith(b"HTTP/1.1 431") and b"application/json" in big and b'"headers_too_large"' in big
    many = raw_request(srv.url, HEAD + b"".join(b"X-%d: 1\r\n" % i for i in range(30)) + b"Content-Length: 0\r\n\r\n")
    assert many.startswith(b"HTTP/1.1 431") and b"33 headers" in many
    after = scrape(srv.url)
    assert sample(after, "densekit_errors_total", code="headers_too_large") - \
        sample(before, "densekit_errors_total", code="headers_too_large") == 2
    assert sample(after, "densekit_http_requests_total", path="other", status="431") >= 2


def test_a_head_that_never_ends_is_refused_as_it_grows_and_a_slow_one_times_out(srv, images):  # noqa: F811
    host, port = srv.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:   # no end of headers, 4 KB at a time
        s.sendall(HEAD + b"X-Junk: ")
        answer = b""
        for _ in range(10):
            try:
                s.sendall(b"a" * 4096)
            except OSError:
                break
            time.sleep(0.05)
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    got = {}
    slow = threading.Thread(target=lambda: got.update(raw=raw_request(srv.url, HEAD + b"X-Slow: a")))
    slow.start()             # a head that stalls: 408 after --header-timeout 1
    assert post(srv.url, images[0].read_bytes()).status_code == 200      # valid requests go on meanwhile
    slow.join(10)
    assert got["raw"].startswith(b"HTTP/1.1 408") and b'"header_timeout"' in got["raw"]


def test_unparsable_http_such_as_a_non_numeric_content_length_is_400_json_and_counted(srv):
    before = sample(scrape(srv.url), "densekit_errors_total", code="bad_request")
    answer = raw_request(srv.url, HEAD + b"Content-Length: abc\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400") and b"application/json" in answer
    assert b'"bad_request"' in answer and b"Content-Length" in answer
    assert sample(scrape(srv.url), "densekit_errors_total", code="bad_request") - before == 1


def test_a_request_over_the_pixel_budget_is_413_before_any_image_is_decoded(srv):
    files = [("file", (f"{i}.png", png(200, 200, i), "image/png")) for i in range(3)]   # 3 x 40,000 > 100,000
    res = httpx.post(f"{srv.url}/v1/predict", files=files)
    assert "120,000 pixels in all" in error_of(res, 413, "too_many_pixels")
    assert httpx.post(f"{srv.url}/v1/predict", files=files[:2]).status_code == 200


@pytest.mark.parametrize("which", ["srv", "onnx_srv"])
def test_a_format_pillow_decodes_while_opening_is_refused_unopened(which, request):
    url = request.getfixturevalue(which).url
    bomb = ico_holding(blank_png(6000, 6000))        # 36 megapixels behind a 16 x 16 directory entry
    assert len(bomb) < 100_000
    assert "not an image" in error_of(post(url, bomb, "image/x-icon"), 400, "not_an_image")
    answer = raw_request(url, HEAD + b"Content-Length: zz\r\n\r\n")     # and the protocol guard, on this backend
    assert answer.startswith(b"HTTP/1.1 400") and b'"bad_request"' in answer


@pytest.mark.parametrize("which", ["srv", "onnx_srv"])
def test_exif_orientation_is_applied_before_the_model_sees_the_image(which, request, images):  # noqa: F811
    url = request.getfixturevalue(which).url
    upright = Image.open(images[5]).resize((40, 24)).tobytes()      # not square: a turn changes the size
    buf = io.BytesIO()
    Image.frombytes("L", (40, 24), upright).save(buf, "PNG")
    straight, turned = post(url, buf.getvalue(), top_k=10), post(url, rotated_copy(buf.getvalue()), top_k=10)
    assert straight.status_code == turned.status_code == 200
    assert straight.json()[0]["top_k"] == turned.json()[0]["top_k"]


def test_the_api_pages_load_their_scripts_from_this_server(srv):
    for page, assets in (("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")), ("/redoc", ("redoc.standalone.js",))):
        html = httpx.get(srv.url + page).text
        assert "cdn." not in html and "fonts.googleapis" not in html
        for name in assets:
            assert f"/docs-assets/{name}" in html
            res = httpx.get(f"{srv.url}/docs-assets/{name}")
            assert res.status_code == 200 and len(res.content) > 10_000
    error_of(httpx.get(f"{srv.url}/docs-assets/nothing.js"), 404, "not_found")


def test_a_request_cut_by_the_drain_timeout_gets_json_503_and_no_traceback(digits_run, tmp_path):
    with server(digits_run.dir, "--drain-timeout", "1", "--body-timeout", "60", tmp=tmp_path) as proc:
        got = {}
        slow = threading.Thread(target=lambda: got.update(raw=raw_request(
            proc.url, HEAD + b"Content-Length: 5000\r\n\r\n", b"\x89PNG", wait=20)))
        slow.start()                 # a body that never completes, still within its 60 s
        time.sleep(0.5)
        proc.terminate()
        slow.join(20)
        assert proc.wait(30) == 0
    assert got["raw"].startswith(b"HTTP/1.1 503") and b'"shutting_down"' in got["raw"]
    assert "Traceback" not in proc.stderr_path.read_text()


def test_head_limits_that_cannot_act_are_refused_before_serving(digits_run, capsys):
    from densekit.cli import main
    for flag, value in (("--max-header-bytes", "10"), ("--max-headers", "0"), ("--header-timeout", "0"),
                        ("--max-request-pixels", "0"), ("--decoders", "0")):
        assert main(["serve", str(digits_run.dir), flag, value, "--port", "0"]) == 1
        err = capsys.readouterr().err
        assert f"{flag} must be a number >=" in err and len(err.strip().splitlines()) == 1, err
