"""A real Prometheus server on loopback (Debian's ``prometheus`` package) for tests."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.daemons import free_port
from tests.system_tools import tool_or_skip


class PrometheusServer:
    """``prometheus`` with a temporary config and TSDB, scraping ``jobs`` every second."""

    def __init__(self, home: Path, jobs: dict[str, list[tuple[str, dict[str, str]]]]) -> None:
        self.binary = tool_or_skip("prometheus", "apt-get install prometheus")
        self.home = home
        self.port = free_port()
        self.jobs = jobs
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _config(self) -> str:
        """JSON is YAML: the config is written with the json module, no YAML library needed."""
        jobs = [
            {
                "job_name": name,
                "static_configs": [{"targets": [target], "labels": labels} for target, labels in targets],
            }
            for name, targets in self.jobs.items()
        ]
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": jobs}
        return json.dumps(config, indent=2)

    def start(self) -> PrometheusServer:
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "prometheus.yml"
        config.write_text(self._config())
        log = (self.home / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.home / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 30
        while not self._ready():
            assert self.process.poll() is None, f"prometheus exited:\n{self.log_text()}"
            assert time.monotonic() < deadline, f"prometheus never became ready:\n{self.log_text()}"
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                status: int = response.status  # urlopen's result is typed Any
                return status == 200
        except OSError:
            return False

    def log_text(self) -> str:
        path = self.home / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def query(self, expr: str) -> tuple[str, Any]:
        """(status, data or error) of an instant query through the HTTP API."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
        if body["status"] != "success":
            return body["status"], f"{body.get('errorType')}: {body.get('error')}"
        return body["status"], body["data"]

    def wait_until(self, expr: str, check: Any, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            status, data = self.query(expr)
            if status == "success" and check(data["result"]):
                return data["result"]
            assert time.monotonic() < deadline, f"{expr} never satisfied the check; last: {data}"
            time.sleep(0.25)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
