"""`densekit serve`: the real server on 127.0.0.1 in a subprocess, real HTTP requests.

Each server is started on a free port, bounded in time and killed at the end of its module.
Answers are compared with `densekit.predict` on the same files."""
import io
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

import densekit
from densekit.cli import main


@pytest.fixture(scope="module")
def run(digits_run):
    """The session's tiny digits run (conftest.py), shared by the serving test modules."""
    return digits_run


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Digits test images as 8-bit PNGs, plus a larger RGB JPEG that must be converted and resized."""
    folder = tmp_path_factory.mktemp("images")
    ds = densekit.load_dataset("digits", "test")
    paths = []
    for i in range(32):
        x, _ = ds[i]
        path = folder / f"digit{i:02d}.png"
        Image.fromarray(x[0].numpy()).save(path)
        paths.append(path)
    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "photo.jpg", quality=90)
    return paths + [folder / "photo.jpg"]


@contextmanager
def server(source, *flags, tmp: Path, timeout: float = 90, cmd=None):
    """`densekit serve SOURCE --port 0 FLAGS` (or ``cmd``) until ready; terminated (then killed) on exit."""
    out, err = tmp / "stdout.txt", tmp / "stderr.txt"
    cmd = cmd or [sys.executable, "-m", "densekit", "serve", str(source), "--port", "0", "--log-level", "warning",
                  *flags]
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe)
    try:
        deadline = time.monotonic() + timeout
        url = None
        while time.monotonic() < deadline and proc.poll() is None:
            if url is None and (m := re.search(r"http://127\.0\.0\.1:(\d+)", out.read_text())):
                url = f"http://127.0.0.1:{m.group(1)}"
            if url:
                try:
                    if httpx.get(url + "/ready", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        else:
            raise AssertionError(f"server did not become ready: {err.read_text()[-2000:]}")
        proc.url, proc.stderr_path = url, err
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def srv(run, tmp_path_factory):
    with server(run.dir, "--max-files", "4", "--max-bytes", "100000", "--max-pixels", "40000", "--body-timeout", "2",
                tmp=tmp_path_factory.mktemp("srv")) as proc:
        yield proc


def scrape(url) -> dict:
    """Every sample of /metrics: {(name, ((label, value), ...)): number}."""
    text = httpx.get(url + "/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def post_files(url, paths, top_k=5, **kw):
    files = [("file", (p.name, p.read_bytes(), "image/png")) for p in paths]
    return httpx.post(f"{url}/v1/predict", params={"top_k": top_k}, files=files, timeout=60, **kw)


def assert_same(served: list, expected: list):
    """Same classes in the same order; probabilities equal to float32 rounding (a batch of another
    size may take another kernel)."""
    assert len(served) == len(expected)
    for s, e in zip(served, expected):
        assert [g["index"] for g in s["top_k"]] == [g["index"] for g in e["top_k"]]
        assert [g["label"] for g in s["top_k"]] == [g["label"] for g in e["top_k"]]
        assert [g["prob"] for g in s["top_k"]] == pytest.approx([g["prob"] for g in e["top_k"]], abs=1e-6)


def raw_request(url, head: bytes, body: bytes = b"", wait: float = 10) -> bytes:
    """Send bytes as they are on one connection and read one answer (up to ``wait`` seconds)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as s:
        s.sendall(head + body)
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
                top, sep, rest = data.partition(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", top)
                if sep and length and len(rest) >= int(length.group(1)):
                    break
        except (socket.timeout, ConnectionResetError):
            pass
    return data


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header that claims width x height pixels, with almost no pixel data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b""))


# -- valid requests --------------------------------------------------------------------------------

def test_one_image_as_the_body_or_as_a_file_equals_densekit_predict(run, images, srv):
    expected = densekit.predict(run.dir, [images[0]], top_k=3)
    body = httpx.post(f"{srv.url}/v1/predict?top_k=3", content=images[0].read_bytes(),
                      headers={"content-type": "image/png"})
    assert body.status_code == 200 and body.headers["content-type"] == "application/json"
    assert body.json()[0]["file"] is None
    assert_same(body.json(), expected)
    part = post_files(srv.url, [images[0]], top_k=3)
    assert part.status_code == 200 and part.json()[0]["file"] == images[0].name
    assert_same(part.json(), expected)


def test_many_files_are_answered_in_order_with_their_names(run, images, srv):
    sent = [images[5], images[-1], images[2]]      # the JPEG is RGB 40x30: converted and resized as predict does
    res = post_files(srv.url, sent, top_k=2)
    assert res.status_code == 200
    assert [r["file"] for r in res.json()] == [p.name for p in sent]
    assert_same(res.json(), densekit.predict(run.dir, sent, top_k=2))


def test_top_k_larger_than_the_classes_gives_every_class(srv, images):
    res = post_files(srv.url, [images[1]], top_k=50)
    guesses = res.json()[0]["top_k"]
    assert res.status_code == 200 and sorted(g["index"] for g in guesses) == list(range(10))
    assert sum(g["prob"] for g in guesses) == pytest.approx(1, abs=1e-4)


def test_concurrent_requests_equal_densekit_predict_and_are_counted(run, images, srv):
    before = scrape(srv.url)
    expected = densekit.predict(run.dir, images[:32], top_k=3)
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda p: client.post(f"{srv.url}/v1/predict?top_k=3", content=p.read_bytes(),
                                                      headers={"content-type": "image/png"}), images[:32]))
    assert [a.status_code for a in answers] == [200] * 32
    assert_same([a.json()[0] for a in answers], expected)
    after = scrape(srv.url)
    ok = ("densekit_http_requests_total", {"path": "/v1/predict", "status": "200"})
    assert sample(after, ok[0], **ok[1]) - sample(before, ok[0], **ok[1]) == 32
    assert sample(after, "densekit_images_total") - sample(before, "densekit_images_total") == 32
    passes = sample(after, "densekit_batch_size_count") - sample(before, "densekit_batch_size_count")
    images_in_passes = sample(after, "densekit_batch_size_sum") - sample(before, "densekit_batch_size_sum")
    assert images_in_passes == 32 and 1 <= passes <= 32
    assert sample(after, "densekit_http_request_duration_seconds_count", path="/v1/predict") >= 32


# -- bad requests ----------------------------------------------------------------------------------

def error_of(res, status, code):
    assert res.status_code == status, res.text
    assert res.headers["content-type"] == "application/json"
    body = res.json()
    assert body["error"] == code and body["detail"] and "\n" not in body["detail"]
    return body["detail"]


def test_not_an_image_truncated_or_empty_is_400(srv, images):
    png = images[0].read_bytes()
    post = lambda data, t="image/png": httpx.post(f"{srv.url}/v1/predict", content=data, headers={"content-type": t})
    assert "not an image" in error_of(post(b"this is text, not an image" * 10), 400, "not_an_image")
    assert "not an image" in error_of(post(b"hello, world", "application/octet-stream"), 400, "not_an_image")
    big = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (150, 150), dtype=np.uint8)).save(big, "PNG")
    assert "truncated" in error_of(post(big.getvalue()[: len(big.getvalue()) // 2]), 400, "unreadable_image")
    error_of(post(b""), 400, "empty_image")
    files = [("file", ("a.png", png, "image/png")), ("file", ("b.png", b"%PDF-1.4", "application/pdf"))]
    assert "b.png" in error_of(httpx.post(f"{srv.url}/v1/predict", files=files), 400, "not_an_image")


def test_malformed_multipart_and_form_fields_are_400(srv, images):
    bad = httpx.post(f"{srv.url}/v1/predict", content=b"--x\r\nnonsense",
                     headers={"content-type": "multipart/form-data"})           # no boundary
    error_of(bad, 400, "bad_multipart")
    field = httpx.post(f"{srv.url}/v1/predict", data={"top_k": "3"},
                       files=[("file", ("a.png", images[0].read_bytes(), "image/png"))])
    assert "query parameter" in error_of(field, 400, "unexpected_field")
    none = httpx.post(f"{srv.url}/v1/predict", headers={"content-type": "multipart/form-data; boundary=abc"},
                      content=b"--abc--\r\n")
    error_of(none, 400, "no_image")


def test_wrong_content_type_is_415(srv, images):
    for kind in ("text/plain", "application/json", "application/x-www-form-urlencoded"):
        res = httpx.post(f"{srv.url}/v1/predict", content=images[0].read_bytes(), headers={"content-type": kind})
        assert kind in error_of(res, 415, "unsupported_media_type")
    error_of(httpx.post(f"{srv.url}/v1/predict", content=images[0].read_bytes()), 415, "unsupported_media_type")


def test_bad_top_k_is_422(srv, images):
    for value in ("0", "-3", "three", "1.5"):
        res = httpx.post(f"{srv.url}/v1/predict?top_k={value}", content=images[0].read_bytes(),
                         headers={"content-type": "image/png"})
        assert error_of(res, 422, "bad_parameter").startswith("top_k: ")


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(srv):
    head = (b"POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
            b"Content-Length: 500000000\r\n\r\n")
    answer = raw_request(srv.url, head, b"\x89PNG" * 100)           # 400 bytes of the 500 MB it claims
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"too_large"' in answer and b"100,000" in answer


def test_a_streamed_body_over_the_limit_is_refused_while_it_arrives(srv):
    head = b"POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n%s\r\n" % (20000, b"\0" * 20000)
    answer = raw_request(srv.url, head, chunk * 6)      # 120,000 bytes, no final chunk: the body never ends
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"too_large"' in answer


def test_too_many_pixels_and_decompression_bombs_are_413_before_decoding(srv):
    post = lambda data: httpx.post(f"{srv.url}/v1/predict", content=data, headers={"content-type": "image/png"})
    big = io.BytesIO()
    Image.new("L", (300, 300)).save(big, "PNG")                         # 90,000 px > --max-pixels 40000
    assert "300 x 300" in error_of(post(big.getvalue()), 413, "too_many_pixels")
    bomb = png_bomb(60_000, 60_000)                                     # 3.6 gigapixels in 100 bytes
    assert len(bomb) < 200
    error_of(post(bomb), 413, "too_many_pixels")
    error_of(post(png_bomb(1_000, 1_000)), 413, "too_many_pixels")     # under Pillow's own limit, over ours
    assert httpx.get(f"{srv.url}/health").status_code == 200


def test_too_many_files_is_413(srv, images):
    assert "at most 4" in error_of(post_files(srv.url, images[:5]), 413, "too_many_files")
    assert post_files(srv.url, images[:4]).status_code == 200


def test_a_stalled_body_times_out_while_other_requests_are_served(srv, images):
    head = b"POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\nContent-Length: 5000\r\n\r\n"
    answer = {}
    stalled = threading.Thread(target=lambda: answer.update(raw=raw_request(srv.url, head, b"\x89PNG")))
    start = time.monotonic()
    stalled.start()
    time.sleep(0.3)
    assert post_files(srv.url, [images[3]]).status_code == 200        # served while the other stalls
    stalled.join(30)
    assert answer["raw"].startswith(b"HTTP/1.1 408") and b'"body_timeout"' in answer["raw"]
    assert time.monotonic() - start < 20


def test_garbage_leaves_the_server_healthy(srv, images):
    for junk in (b"\x00\xff" * 500, b"GET / HTTP/9.9\r\n\r\n", b"GET /v1/model HTTP/1.1\r\n\r\n",
                 b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: -5\r\n\r\n", b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                 b"Content-Length: 4\r\n\r\n\x89PNG", b"A" * 70000 + b"\r\n\r\n"):
        raw_request(srv.url, junk, wait=5)
    assert httpx.get(f"{srv.url}/ready").status_code == 200
    assert post_files(srv.url, [images[4]]).status_code == 200
    assert srv.poll() is None


def test_unknown_paths_and_methods_get_json_errors(srv):
    error_of(httpx.get(f"{srv.url}/v2/nothing"), 404, "not_found")
    error_of(httpx.get(f"{srv.url}/v1/predict"), 405, "method_not_allowed")


# -- the other endpoints ---------------------------------------------------------------------------

def test_health_ready_and_the_model_card(run, srv):
    assert httpx.get(f"{srv.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{srv.url}/ready").json() == {"status": "ready"}
    card = httpx.get(f"{srv.url}/v1/model").json()
    assert card["name"] == "densenet-bc-40-k12" and card["classes"] == [str(i) for i in range(10)]
    assert card["input_size"] == [1, 8, 8] and card["backend"] == "torch"
    assert card["metrics"]["test_top1"] == run.summary["test_top1"]
    assert card["versions"]["densekit"] == densekit.__version__ and "torch" in card["versions"]
    assert card["serving"]["max_files"] == 4 and card["serving"]["max_batch_size"] == 32


def test_metrics_are_prometheus_text_with_errors_by_code(srv):
    httpx.post(f"{srv.url}/v1/predict", content=b"x", headers={"content-type": "text/plain"})
    res = httpx.get(f"{srv.url}/metrics")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/plain")
    samples = scrape(srv.url)
    assert sample(samples, "densekit_errors_total", code="unsupported_media_type") >= 1
    assert ("densekit_queue_depth", ()) in samples
    assert any(name == "densekit_batch_size_bucket" for name, _ in samples)


def test_the_openapi_page_documents_predict(srv):
    assert "swagger" in httpx.get(f"{srv.url}/docs").text.lower()
    spec = httpx.get(f"{srv.url}/openapi.json").json()
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body and "image/*" in body


# -- batching, the queue, shutdown -----------------------------------------------------------------

@pytest.fixture(scope="module")
def slow(run, tmp_path_factory):
    """A batch of 4 or a wait of 3 s, and room for 4 waiting images: batching and a full queue on cue."""
    with server(run.dir, "--max-batch-size", "4", "--max-delay-ms", "3000", "--queue-size", "4",
                "--no-forward-process", tmp=tmp_path_factory.mktemp("slow")) as proc:
        yield proc


def wait_for_queue(url, depth, timeout=20):
    deadline = time.monotonic() + timeout
    while sample(scrape(url), "densekit_queue_depth") != depth:
        assert time.monotonic() < deadline, f"the queue never held {depth} images"
        time.sleep(0.02)


@contextmanager
def incoming(url):
    """A prediction request whose body is still on its way (its head and a first byte sent) for the
    length of the block: batches forming meanwhile wait for it, up to --max-delay-ms."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    try:
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 1000\r\n\r\n\x89")
        deadline = time.monotonic() + 20
        while sample(scrape(url), "densekit_requests_incoming") < 1:
            assert time.monotonic() < deadline, "the slow request never counted as incoming"
            time.sleep(0.02)
        yield
    finally:
        sock.close()


def test_concurrent_requests_share_one_forward_pass(run, images, slow):
    before = scrape(slow.url)
    with incoming(slow.url), httpx.Client(timeout=60) as client, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda p: client.post(f"{slow.url}/v1/predict", content=p.read_bytes(),
                                                      headers={"content-type": "image/png"}), images[:4]))
    assert_same([a.json()[0] for a in answers], densekit.predict(run.dir, images[:4]))
    after = scrape(slow.url)
    assert sample(after, "densekit_batch_size_count") - sample(before, "densekit_batch_size_count") == 1
    assert sample(after, "densekit_batch_size_sum") - sample(before, "densekit_batch_size_sum") == 4


def test_a_full_queue_answers_503_and_the_waiting_request_still_completes(run, images, slow):
    with incoming(slow.url), ThreadPoolExecutor(1) as pool:
        first = pool.submit(post_files, slow.url, images[:3])    # 3 images wait up to 3 s for a 4th
        wait_for_queue(slow.url, 3)
        busy = post_files(slow.url, images[3:5])                 # 3 + 2 > 4
        assert "busy" in error_of(busy, 503, "queue_full") and busy.headers["retry-after"] == "1"
        assert first.result(30).status_code == 200
        assert_same(first.result().json(), densekit.predict(run.dir, images[:3]))
    assert "--queue-size" in error_of(post_files(slow.url, images[:5]), 413, "too_many_files")
    assert sample(scrape(slow.url), "densekit_errors_total", code="queue_full") == 1


def forward_children(pid: int) -> list[int]:
    """The forward processes (``python -m densekit.serve.forward``) of process ``pid``."""
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields.get("PPid", "0")) == pid and b"densekit.serve.forward" in cmdline:
            out.append(int(status.parent.name))
    return out


def wait_gone(pid: int, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and b"Z" not in Path(f"/proc/{pid}/stat").read_bytes().split(b")")[-1][:3]:
        assert time.monotonic() < deadline, f"process {pid} is still running"
        time.sleep(0.05)


def test_the_torch_forward_runs_in_a_child_that_restarts_when_killed_and_ends_with_the_server(run, images, tmp_path):
    with server(run.dir, tmp=tmp_path) as proc:
        assert httpx.get(f"{proc.url}/v1/model").json()["serving"]["forward_process"] is True
        [child] = forward_children(proc.pid)
        assert b"libtorch" not in Path(f"/proc/{proc.pid}/maps").read_bytes()   # PyTorch lives in the child only
        expected = densekit.predict(run.dir, images[:2])
        assert_same(post_files(proc.url, images[:2]).json(), expected)
        os.kill(child, signal.SIGKILL)                        # out of memory, or a hostile neighbour
        wait_gone(child)
        assert_same(post_files(proc.url, images[:2]).json(), expected)   # a new child answers
        [child] = forward_children(proc.pid)
        proc.kill()                                           # the server dies without a word
        proc.wait(10)
        wait_gone(child)                                      # its child does not outlive it


def test_the_app_serves_from_code_read_on_stdin_without_a_main_guard(run, images):
    """The forward process must not re-run the caller's main script (multiprocessing's spawn does,
    and fails on stdin and recurses in a script without ``if __name__ == "__main__"``)."""
    code = (f"from fastapi.testclient import TestClient\nfrom densekit.serve import create_app\n"
            f"with TestClient(create_app({str(run.dir)!r})) as c:\n"
            f"    print(c.post('/v1/predict', content=open({str(images[0])!r}, 'rb').read(),\n"
            f"                 headers={{'content-type': 'image/png'}}).json()[0]['label'])\n")
    out = subprocess.run([sys.executable, "-"], input=code, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == densekit.predict(run.dir, images[:1])[0]["label"]


def test_each_worker_has_a_forward_process_of_its_own(run, images, tmp_path):
    with server(run.dir, "--workers", "2", "--max-batch-size", "2", tmp=tmp_path) as proc:
        assert len(forward_children(proc.pid)) == 2
        with httpx.Client(timeout=60) as client, ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda p: client.post(f"{proc.url}/v1/predict", content=p.read_bytes(),
                                                          headers={"content-type": "image/png"}), images[:8]))
        assert_same([a.json()[0] for a in answers], densekit.predict(run.dir, images[:8]))


def test_ctrl_c_to_the_whole_process_group_drains_then_stops_the_forward_process(run, tmp_path):
    out = tmp_path / "out.txt"
    with open(out, "w") as fo:
        proc = subprocess.Popen([sys.executable, "-m", "densekit", "serve", str(run.dir), "--port", "0"],
                                stdout=fo, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not (children := forward_children(proc.pid)) or "http://" not in out.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, out.read_text()[-2000:]
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)                    # what a terminal's Ctrl-C sends: every process
        assert proc.wait(30) == 130
        wait_gone(children[0], timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_no_forward_process_runs_passes_in_the_server(run, slow):
    assert httpx.get(f"{slow.url}/v1/model").json()["serving"]["forward_process"] is False
    assert forward_children(slow.pid) == []


def test_sigterm_answers_the_request_in_flight_then_exits_0(run, images, tmp_path):
    with server(run.dir, "--max-batch-size", "2", "--max-delay-ms", "2000", tmp=tmp_path) as proc:
        with incoming(proc.url), ThreadPoolExecutor(1) as pool:
            inflight = pool.submit(post_files, proc.url, [images[7]])
            wait_for_queue(proc.url, 1)
            children = forward_children(proc.pid)
            proc.terminate()                                     # SIGTERM while the image waits for its batch
            answer = inflight.result(30)
        assert answer.status_code == 200
        assert_same(answer.json(), densekit.predict(run.dir, [images[7]]))
        assert proc.wait(30) == 0 and len(children) == 1
        wait_gone(children[0], timeout=5)                       # the forward process was stopped, not left behind
        with pytest.raises(httpx.TransportError):
            httpx.get(proc.url + "/health", timeout=2)
        assert "Traceback" not in proc.stderr_path.read_text()


# -- the command line ------------------------------------------------------------------------------

def test_bad_sources_and_settings_fail_in_one_line_before_serving(run, tmp_path, capsys):
    (tmp_path / "m.onnx").write_bytes(b"not onnx")
    for args, words in (([str(tmp_path / "missing")], "not found"),
                        ([str(run.dir), "--max-batch-size", "0"], "--max-batch-size must be"),
                        ([str(run.dir), "--max-delay-ms", "-1"], "--max-delay-ms must be"),
                        ([str(run.dir), "--backend", "onnx"], "densekit export"),
                        ([str(tmp_path / "m.onnx"), "--backend", "torch"], "--backend onnx")):
        assert main(["serve", *args, "--port", "0"]) == 1
        err = capsys.readouterr().err
        assert words in err and err.startswith("densekit: error: ") and len(err.strip().splitlines()) == 1


def test_a_port_in_use_is_a_one_line_error(run, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", str(run.dir), "--port", str(taken.getsockname()[1])]) == 1
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
