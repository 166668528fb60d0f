"""`make lab` serves the course root: the chapters (live experiments) and the labs, opening on labs/."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_lab_serves_the_chapters_and_the_labs(tmp_path):
    port = _free_port()
    venv = Path(sys.executable).parent.parent
    args = (f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token= --ServerApp.password= "
            "--allow-root --LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws")}
    proc = subprocess.Popen(["make", "-C", str(ROOT), "lab", f"VENV={venv}", f"LAB_ARGS={args}"],
                            stdout=open(tmp_path / "log", "w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "log").read_text()[-3000:]
                time.sleep(0.5)
        names = {d: {item["name"] for item in json.load(urllib.request.urlopen(f"{url}/api/contents/{d}"))["content"]}
                 for d in ("book", "labs")}
        assert "ch01_how_a_network_learns.ipynb" in names["book"]
        assert "01_backprop.ipynb" in names["labs"] and "checks" in names["labs"]
        landing = urllib.request.urlopen(f"{url}/").geturl()
        assert landing.endswith("/lab/tree/labs"), landing
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
