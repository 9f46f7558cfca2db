"""The page at `/` of `densekit serve`, driven in Debian's headless Chromium over the Chrome
DevTools protocol: it picks an image through the page's file input and reads the label shown."""
import json
import shutil
import subprocess
import time

import httpx
import pytest
from websockets.sync.client import connect

import densekit
from test_serve import images, run, server  # noqa: F401  (fixtures and the server helper)


class DevTools:
    """A minimal CDP client: one page target, commands answered in order."""

    def __init__(self, ws):
        self.ws, self.next_id = ws, 0

    def call(self, method, timeout=30, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == self.next_id:
                assert "error" not in message, message["error"]
                return message["result"]

    def eval(self, expression):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression, timeout=60):
        deadline = time.monotonic() + timeout
        while not (value := self.eval(expression)):
            assert time.monotonic() < deadline, f"the page never got to {expression}"
            time.sleep(0.1)
        return value


@pytest.fixture
def browser(tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "headless Chromium is needed for this test: run scripts/setup-system.sh (apt-get install chromium)"
    profile = tmp_path / "profile"
    with open(tmp_path / "chromium.log", "w") as log:
        proc = subprocess.Popen([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                                 "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                                 f"--user-data-dir={profile}", "--window-size=900,900", "about:blank"],
                                stdout=log, stderr=log)
    try:
        active, deadline = profile / "DevToolsActivePort", time.monotonic() + 60
        while not (active.is_file() and active.read_text().count("\n") >= 1):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "chromium.log").read_text()[-2000:]
            time.sleep(0.1)
        port = int(active.read_text().split()[0])
        pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json() if t["type"] == "page"]
        with connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=20) as ws:
            yield DevTools(ws)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_page_shows_the_model_card_and_the_top_class_of_a_picked_image(run, images, browser,  # noqa: F811
                                                                          tmp_path):
    with server(run.dir, tmp=tmp_path) as srv:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=srv.url + "/")
        browser.wait_for("document.body.dataset.state === 'ready'")
        assert browser.eval("document.getElementById('card-name').textContent").startswith("densenet-bc-40-k12")
        assert browser.eval("document.getElementById('card-accuracy').textContent") == \
            f"{100 * run.summary['test_top1']:.2f}% top-1"
        assert browser.eval("document.getElementById('card-classes').textContent").startswith("10: 0, 1, 2")

        picked = images[9]
        root = browser.call("DOM.getDocument")["root"]["nodeId"]
        node = browser.call("DOM.querySelector", nodeId=root, selector="#file")["nodeId"]
        browser.call("DOM.setFileInputFiles", nodeId=node, files=[str(picked)])
        browser.wait_for("['done', 'error'].includes(document.body.dataset.state)")
        assert browser.eval("document.getElementById('error').textContent") == ""

        expected = densekit.predict(run.dir, [picked], top_k=5)[0]["top_k"]
        assert browser.eval("document.getElementById('top1').dataset.label") == expected[0]["label"]
        rows = browser.eval("[...document.querySelectorAll('#results .row')].map(r => [r.dataset.label, "
                            "r.querySelector('.prob').textContent, r.querySelector('.bar span').style.width])")
        assert [r[0] for r in rows] == [g["label"] for g in expected]
        assert [r[1] for r in rows] == [f"{100 * g['prob']:.1f}%" for g in expected]
        # the bar is as long as the probability (the browser writes "100.0%" back as "100%")
        assert float(rows[0][2].rstrip("%")) == pytest.approx(float(f"{100 * expected[0]['prob']:.1f}"))

        shot = browser.call("Page.captureScreenshot", format="png")["data"]
        (tmp_path / "page.png").write_bytes(__import__("base64").b64decode(shot))
