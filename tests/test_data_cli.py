"""`densekit data list|info|show|import` through the CLI entry point, and bad data as one-line errors."""
import hashlib
import http.server
import io
import json
import sys
import threading

from PIL import Image

from datagen import write_cifar10, write_folder
from densekit.cli import main
from densekit.data.download import download


def test_list_names_every_source(capsys):
    assert main(["data", "list", "--json"]) == 0
    sources = {json.loads(line)["name"] for line in capsys.readouterr().out.splitlines()}
    assert {"mnist", "fashion-mnist", "cifar10", "cifar100", "folder", "tfrecord", "digits", "synthetic",
            "packed"} <= set(sources)


def test_info_json_has_classes_and_per_class_counts_per_split(tmp_path, capsys):
    write_cifar10(tmp_path, per_batch=4)
    assert main(["data", "info", "cifar10", "--data-dir", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["classes"][:2] == ["airplane", "automobile"] and info["channels"] == 3 and info["size"] == [32, 32]
    assert set(info["splits"]) == {"train", "test"}
    assert info["splits"]["train"]["count"] == 20 and sum(info["splits"]["train"]["per_class"]) == 20
    assert len(info["splits"]["test"]["per_class"]) == 10


def test_info_table_for_a_folder(tmp_path, capsys):
    write_folder(tmp_path / "train", per_class=2)
    write_folder(tmp_path / "test", per_class=1)
    assert main(["data", "info", f"folder:{tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "3 classes, 3 x 10 x 12, train 6, test 3" in out and "dog" in out


def test_show_writes_a_grid_with_a_row_per_class(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["data", "show", "digits", "--per-class", "3", "--out", str(out)]) == 0
    img = Image.open(out)
    assert img.height == 10 * (64 + 4) + 4 and img.width > 3 * 64


def test_bad_data_is_one_line_on_stderr_with_exit_1(tmp_path, capsys):
    write_folder(tmp_path, per_class=1)
    (tmp_path / "owl").mkdir()
    assert main(["data", "info", f"folder:{tmp_path}"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'owl'}: empty class folder" in err
    assert main(["data", "info", "nonsense"]) == 1
    assert "unknown dataset 'nonsense'" in capsys.readouterr().err


def test_import_refuses_to_overwrite_without_overwrite(tmp_path, capsys):
    out = tmp_path / "packed"
    assert main(["data", "import", "digits", "--workers", "0", "--out", str(out)]) == 0
    (out / "train-images.npy").write_bytes(b"kept")          # the earlier import, marked
    capsys.readouterr()
    assert main(["data", "import", "digits", "--workers", "0", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists and is not empty; give --overwrite" in err[0]
    assert (out / "train-images.npy").read_bytes() == b"kept"
    assert main(["data", "import", "digits", "--workers", "0", "--out", str(out), "--overwrite"]) == 0
    assert main(["data", "info", f"packed:{out}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["splits"]["train"]["count"] == 1437


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _serve(body: bytes, requests: int):
    """A 127.0.0.1 server that answers ``requests`` GETs with ``body`` and stops by itself (10 s at most)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = 10

    def loop():
        for _ in range(requests):
            server.handle_request()
        server.server_close()
    threading.Thread(target=loop, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/"


def test_a_download_says_what_and_how_big_and_shows_progress(tmp_path, capsys, monkeypatch):
    body = bytes(range(256)) * 8192                         # 2 MB: two chunks
    url = _serve(body, requests=2)
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    got = download([url + "f.bin"], tmp_path / "f.bin", md5=hashlib.md5(body).hexdigest())
    assert got.read_bytes() == body
    text = term.getvalue()
    assert "densekit: downloading f.bin (2.1 MB) from 127.0.0.1" in text and "f.bin: 2.1 MB/2.1 MB (100%)" in text
    # `data import` of a set not on disk: the same line, then the checksum refuses this stand-in archive
    monkeypatch.delenv("DENSEKIT_OFFLINE", raising=False)
    monkeypatch.setenv("DENSEKIT_CIFAR10_MIRROR", url)
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["data", "import", "cifar10", "--data-dir", str(tmp_path / "cifar"), "--out", str(tmp_path / "p")]) == 1
    err = term.getvalue()
    assert "densekit: downloading cifar-10-python.tar.gz (2.1 MB) from 127.0.0.1" in err
    assert "checksum mismatch" in err and not (tmp_path / "cifar" / "cifar-10-python.tar.gz").exists()


def test_data_info_of_a_set_not_on_disk_says_what_it_would_download_and_downloads_nothing(tmp_path, capsys,
                                                                                          monkeypatch):
    monkeypatch.setenv("DENSEKIT_CIFAR10_MIRROR", "http://127.0.0.1:9/")   # nothing listens: a download would fail
    assert main(["data", "info", "cifar10", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("cifar10 is not on disk: `densekit data import cifar10` or training "
                                               "on it downloads cifar-10-python.tar.gz (170.5 MB) from 127.0.0.1:9")
    assert not any(tmp_path.iterdir())
    assert main(["data", "info", "cifar100", "--data-dir", str(tmp_path), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["on_disk"] is False and plan["download"][0]["file"] == "cifar-100-python.tar.gz" \
        and plan["bytes"] == 169_001_437
    write_cifar10(tmp_path, per_batch=4)   # on disk: the counts, as before
    assert main(["data", "info", "cifar10", "--data-dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["splits"]["train"]["count"] == 20


def test_data_info_summarises_past_fifty_classes(capsys):
    assert main(["data", "info", "synthetic:n=600,classes=60,size=8,channels=1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[0].startswith("synthetic:n=600,classes=60,size=8,channels=1: 60 classes"), out
    assert out[1].startswith("  train: per class min ") and " / median " in out[1] and "; rarest " in out[1] \
        and "; commonest " in out[1] and out[2].startswith("  test: ")
