"""Headless Chromium driven over the DevTools protocol (a websocket, aiohttp's client):
the web view at a given viewport width, its layout measured in the page, its DOM and a
full-page screenshot. Debian's ``chromium`` (``.ci/run`` installs it, and a CJK font)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

#: measured in the page once it is ready: sideways overflow and what causes it (on a
#: phone, a page wider than the screen widens the layout viewport, innerWidth with it: the
#: device width is the measure)
MEASURE_JS = """
((vw) => {
  const wide = [...document.querySelectorAll("body *")]
    .filter((e) => e.getBoundingClientRect().right > vw + 0.5)
    .slice(0, 10)
    .map((e) => `${e.tagName.toLowerCase()}.${e.className || ""}#${e.id || ""} ` +
                `right=${e.getBoundingClientRect().right.toFixed(1)}`);
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
          width: vw, wide,
          ready: document.body.dataset.ready || "", fonts: document.fonts.status,
          clientWidth: document.documentElement.clientWidth};
})
"""


class Chromium:
    """One headless Chromium process with a fresh profile; ``page()`` opens a page."""

    def __init__(self, user_dir: Path, env: dict[str, str] | None = None) -> None:
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        assert binary, "Debian chromium missing (.ci/run installs it)"
        user_dir.mkdir(parents=True, exist_ok=True)
        self.user_dir = user_dir
        port_file = user_dir / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)  # a previous browser's, in a reused directory
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
             f"--user-data-dir={user_dir}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            assert self.proc.poll() is None, "chromium exited"
            assert time.monotonic() < deadline, "chromium did not open its debugging port"
            time.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def visit(self, url: str, width: int, shot: Path | None = None,
              height: int = 900, timeout: float = 60) -> dict[str, Any]:
        """Open ``url`` at ``width`` CSS pixels (a phone below 600: mobile emulation), wait
        for ``body[data-ready]``; return the measurements and the DOM (``html``); save a
        full-page screenshot to ``shot``."""
        return asyncio.run(self._visit(url, width, height, shot, timeout))

    async def _visit(self, url: str, width: int, height: int, shot: Path | None,
                     timeout: float) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:
            async with http.put(f"http://127.0.0.1:{self.port}/json/new?about:blank") as r:
                target = json.loads(await r.text())
            try:
                async with http.ws_connect(target["webSocketDebuggerUrl"],
                                           max_msg_size=0) as ws:
                    return await _drive(ws, url, width, height, shot, timeout)
            finally:
                async with http.get(
                        f"http://127.0.0.1:{self.port}/json/close/{target['id']}"):
                    pass


async def _drive(ws: Any, url: str, width: int, height: int, shot: Path | None,
                 timeout: float) -> dict[str, Any]:
    ids = itertools.count(1)

    async def call(method: str, **params: Any) -> dict[str, Any]:
        n = next(ids)
        await ws.send_json({"id": n, "method": method, "params": params})
        while True:
            msg = await ws.receive_json()
            if msg.get("id") == n:
                assert "error" not in msg, (method, msg["error"])
                result: dict[str, Any] = msg.get("result", {})
                return result

    async def evaluate(expression: str) -> Any:
        got = await call("Runtime.evaluate", expression=expression, returnByValue=True,
                         awaitPromise=True)
        return got["result"].get("value")

    mobile = width < 600
    await call("Emulation.setDeviceMetricsOverride", width=width, height=height,
               deviceScaleFactor=1, mobile=mobile)
    await call("Page.enable")
    await call("Page.navigate", url=url)
    deadline = time.monotonic() + timeout
    while await evaluate("document.body && document.body.dataset.ready") != "1":
        assert time.monotonic() < deadline, f"{url} not ready in {timeout}s"
        await asyncio.sleep(0.2)
    await evaluate("document.fonts.ready.then(() => true)")
    out: dict[str, Any] = await evaluate(f"{MEASURE_JS}({width})")
    out["html"] = await evaluate("document.documentElement.outerHTML")
    out["text"] = await evaluate("document.body.innerText")
    if shot is not None:
        metrics = await call("Page.getLayoutMetrics")
        full = int(metrics["cssContentSize"]["height"]) + 1
        await call("Emulation.setDeviceMetricsOverride", width=width, height=full,
                   deviceScaleFactor=1, mobile=mobile)
        await asyncio.sleep(0.5)  # the charts redraw for the new height
        png = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        shot.write_bytes(base64.b64decode(png["data"]))
    return out
