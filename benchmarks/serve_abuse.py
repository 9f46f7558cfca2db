"""`densekit serve` under hostile clients on 127.0.0.1: the server's peak RSS and the latency of
valid requests while each attack runs, for the torch backend (a run folder) and the onnx backend
(its export), with the default limits (docs/serving.md, "Limits").

Attacks, each for ``--seconds`` with at most ``--connections`` attacking connections at once:
  header flood     heads of 1 MiB streamed as fast as the socket takes them, and heads dripped a
                   few bytes at a time (431 at 32 KiB; 408 after --header-timeout)
  large images     requests of 32 PNGs of 5000 x 5000 (2.5 MB bodies: 413 on the pixel budget)
                   mixed with requests of 3 PNGs of 5000 x 5000 inside the budget (decoded one
                   at a time on the large lane)
  format bypass    an ICO whose 16 x 16 entry holds a 13000 x 13000 PNG (400, never opened)
  slow clients     bodies sent a few bytes a second (408 after --body-timeout, set to 5 s here)
Meanwhile one client sends a valid 8 x 8 PNG every 50 ms and records each latency. Loopback
only; every phase is bounded in time and requests, and the servers are stopped at the end.

    PYTHONPATH=src python benchmarks/serve_abuse.py                 # trains a tiny digits run first
    PYTHONPATH=src python benchmarks/serve_abuse.py --run runs/NAME --seconds 10 --json out.json
"""
from __future__ import annotations

import argparse
import io
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))   # served.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))   # datagen.py: the hostile files
from datagen import blank_png, ico_holding  # noqa: E402
from served import Server  # noqa: E402

HOST = "127.0.0.1"   # loopback only
BODY_TIMEOUT = 5     # seconds; the slow clients' requests end at this


def multipart(images: list[bytes]) -> tuple[bytes, str]:
    boundary = "densekitabuse"
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{i}.png\"\r\n"
             f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n" for i, data in enumerate(images)]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def exchange(port: int, pieces, pause: float, stop: threading.Event, statuses: list):
    """Send ``pieces`` on one connection (``pause`` s apart) and read the answer's status."""
    try:
        with socket.create_connection((HOST, port), timeout=30) as s:
            for piece in pieces:
                if stop.is_set():
                    break
                s.sendall(piece)
                if pause:
                    time.sleep(pause)
            s.settimeout(30)
            head = s.recv(65536)
        statuses.append(int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1") else "closed")
    except OSError:
        statuses.append("reset")


def attacks(fixtures: dict) -> dict:
    req = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
    big_many, kind_many = multipart([fixtures["5000"]] * 32)
    big_few, kind_few = multipart([fixtures["5000"]] * 3)

    def post(body: bytes, kind: str) -> list[bytes]:
        return [b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: " + kind.encode()
                + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body]
    return {
        "header flood": [lambda: ([req + b"X-Flood: "] + [b"a" * 65536] * 16, 0.0),
                         lambda: ([req + b"X-Drip: "] + [b"a" * 64] * 400, 0.05)],
        "large images": [lambda: (post(big_many, kind_many), 0.0), lambda: (post(big_few, kind_few), 0.0)],
        "format bypass": [lambda: (post(fixtures["ico"], "image/x-icon"), 0.0)],
        "slow clients": [lambda: ([req + b"Content-Length: 100000\r\n\r\n"] + [b"\0" * 16] * 1000, 0.2)],
    }


def valid_client(url: str, png: bytes, stop: threading.Event, latencies: list, failures: list):
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                res = client.post(url + "/v1/predict", content=png, headers={"content-type": "image/png"})
                (latencies if res.status_code == 200 else failures).append(time.perf_counter() - start)
            except httpx.HTTPError:
                failures.append(time.perf_counter() - start)
            stop.wait(0.05)


def run_attack(server: Server, makers, seconds: float, connections: int, max_requests: int, png: bytes) -> dict:
    stop, statuses, latencies, failures, peak = threading.Event(), [], [], [], [server.rss_mib()]
    idle = peak[0]
    valid = threading.Thread(target=valid_client, args=(server.url, png, stop, latencies, failures))
    valid.start()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], server.rss_mib())
            stop.wait(0.01)
    sampler = threading.Thread(target=sample)
    sampler.start()
    deadline, sent, live = time.monotonic() + seconds, 0, []
    while time.monotonic() < deadline and sent < max_requests:
        live = [t for t in live if t.is_alive()]
        if len(live) >= connections:
            time.sleep(0.01)
            continue
        pieces, pause = makers[sent % len(makers)]()
        t = threading.Thread(target=exchange, args=(server.port, pieces, pause, stop, statuses), daemon=True)
        t.start()
        live.append(t)
        sent += 1
    stop.set()
    for t in [valid, sampler, *live]:
        t.join(40)
    lat = sorted(latencies)
    p = lambda q: round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))], 1) if lat else None
    counts = {}
    for s in statuses:
        counts[str(s)] = counts.get(str(s), 0) + 1
    return {"attack_requests": sent, "answers": counts, "idle_rss_mib": round(idle, 1),
            "peak_rss_mib": round(peak[0], 1), "valid_requests": len(lat), "valid_failed": len(failures),
            "valid_p50_ms": p(0.5), "valid_p99_ms": p(0.99), "valid_max_ms": round(1000 * lat[-1], 1) if lat else None,
            "alive_after": server.proc.poll() is None and httpx.get(server.url + "/health").status_code == 200}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, help="a run folder (default: train a tiny digits run first)")
    ap.add_argument("--backends", default="torch,onnx")
    ap.add_argument("--seconds", type=float, default=5.0, help="per attack")
    ap.add_argument("--connections", type=int, default=16, help="attacking connections at once")
    ap.add_argument("--max-requests", type=int, default=2000, help="attacking requests per attack, at most")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="serve-abuse-"))
    import densekit
    run = args.run or densekit.train(densekit.TrainConfig(
        model="densenet-bc-40-k12", dataset="digits", epochs=1, out=str(tmp), name="abuse", workers=0,
        tensorboard=False, plots=False), verbose=False).dir
    sources = {"torch": run}
    if "onnx" in args.backends:
        sources["onnx"] = Path(densekit.export(run, "onnx", out=tmp / "model.onnx", dynamic_batch=True,
                                               verify=False)["path"])
    from PIL import Image
    buf = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buf, "PNG")
    fixtures = {"5000": blank_png(5000, 5000), "ico": ico_holding(blank_png(13000, 13000))}
    results = {}
    for backend in args.backends.split(","):
        server = Server(sources[backend], ["--host", HOST, "--body-timeout", str(BODY_TIMEOUT)], tmp / f"{backend}.log")
        try:
            server.wait_ready(180)
        except RuntimeError as err:
            server.stop()
            raise SystemExit(str(err)) from None
        try:
            time.sleep(1)
            results[f"{backend} | idle"] = {"rss_mib": round(server.rss_mib(), 1)}
            for name, makers in attacks(fixtures).items():
                r = run_attack(server, makers, args.seconds, args.connections, args.max_requests, buf.getvalue())
                results[f"{backend} | {name}"] = r
                print(f"{backend:5} {name:14} peak RSS {r['peak_rss_mib']:7.1f} MiB (before {r['idle_rss_mib']:.1f}, "
                      f"idle at start {results[f'{backend} | idle']['rss_mib']:.1f}), "
                      f"valid p50 {r['valid_p50_ms']} ms p99 {r['valid_p99_ms']} ms max {r['valid_max_ms']} ms "
                      f"({r['valid_requests']} ok, {r['valid_failed']} failed); attack answers {r['answers']}; "
                      f"alive {r['alive_after']}", flush=True)
        finally:
            server.stop()
    if args.json:
        args.json.write_text(json.dumps({"seconds": args.seconds, "connections": args.connections,
                                         "results": results}, indent=1))


if __name__ == "__main__":
    main()
