"""A throwaway Prometheus server on loopback for the tests, from Debian's `prometheus` package (`make
test` installs it as root), scraping every node of a Ray cluster through the service-discovery file
Ray's head writes (the setup Ray documents for Prometheus), once a second.
"""

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from .ports import free_port


class PrometheusServer:
    def __init__(self, service_discovery_file: Path):
        binary = shutil.which("prometheus")
        if binary is None:
            raise FileNotFoundError("Prometheus is not installed (apt-get install prometheus; make test does as root)")
        self.root = Path(tempfile.mkdtemp(prefix="ocr-serve-prom-"))
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "scrape_configs": [{"job_name": "ray", "file_sd_configs": [
                      {"files": [str(service_discovery_file)], "refresh_interval": "2s"}]}]}
        (self.root / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with open(self.root / "prometheus.log", "w") as log:  # the child keeps its own copy of the file
            self.process = subprocess.Popen(
                [binary, f"--config.file={self.root / 'prometheus.yml'}", f"--storage.tsdb.path={self.root / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 60
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Prometheus did not start: {(self.root / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.5)

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def up_targets(self) -> set[str]:
        """The scrape targets (host:port) whose last scrape worked."""
        targets = httpx.get(f"{self.url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        return {target["labels"]["instance"] for target in targets if target["health"] == "up"}

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """An instant PromQL query: each series' labels and value."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=30).json()
        assert answer["status"] == "success", answer
        return [(series["metric"], float(series["value"][1])) for series in answer["data"]["result"]]

    def value(self, promql: str) -> float:
        """The value of a query that yields at most one series (0 for none: nothing recorded yet)."""
        results = self.query(promql)
        assert len(results) <= 1, results
        return results[0][1] if results else 0.0

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
