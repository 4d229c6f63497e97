"""Apertium rule-based translation through the Debian `apertium` command, one entry per pair.

A batch goes through one apertium run: each text is an HTML paragraph, so the tags keep texts
apart (plain newlines do not: multiword rules can match across them).
"""

import html
import re
import shutil
import subprocess
from functools import lru_cache
from typing import Any

from core.errors import ModelRunError
from core.settings import WeightSources

from ..schema import ModelEntry
from .base import Family, Probe, TranslationBackend

_PARAGRAPH = re.compile(r"<p>(.*?)</p>", re.DOTALL)


@lru_cache(maxsize=1)
def installed_modes() -> frozenset[str]:
    listing = subprocess.run(["apertium", "-l"], capture_output=True, text=True, timeout=30)
    return frozenset(line.strip() for line in listing.stdout.splitlines() if line.strip())


def _probe() -> Probe:
    if shutil.which("apertium") is None:
        return Probe(None, "the apertium command is not installed (apt-get install apertium apertium-<pair>).")
    return Probe(_package_version("apertium"))


def _package_version(package: str) -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    query = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return query.stdout.strip() or None


class ApertiumPair(TranslationBackend):
    TIMEOUT_S = 120

    @classmethod
    def missing_weights(cls, entry: ModelEntry, weights: WeightSources) -> str | None:
        if entry.weights.name not in installed_modes():
            hint = entry.weights.install_hint or "apt-get install apertium-<pair>"
            return f"Apertium pair {entry.weights.name!r} is not installed ({hint})"
        return None

    def _run(self, texts: list[str]) -> list[str]:
        document = "\n".join(f"<p>{html.escape(' '.join(text.split()), quote=False)}</p>" for text in texts)
        done = subprocess.run(
            ["apertium", "-u", "-f", "html-noent", self.entry.weights.name],
            input=document, capture_output=True, text=True, timeout=self.TIMEOUT_S,
        )
        if done.returncode != 0:
            raise ModelRunError(f"apertium {self.entry.weights.name} failed: {done.stderr.strip()[:300]}")
        return [html.unescape(" ".join(p.split())) for p in _PARAGRAPH.findall(done.stdout)]

    def translate(self, texts: list[str], src: str, dst: str, options: dict[str, Any]) -> list[str]:
        translated = self._run(texts)
        if len(translated) != len(texts):
            # Markup lost somewhere in the pipeline: fall back to one run per text.
            translated = [" ".join(self._run([text])) for text in texts]
        return translated


FAMILY = Family(
    name="apertium",
    description="Apertium rule-based machine translation, one model per installed language pair.",
    homepage="https://www.apertium.org",
    install_hint="apt-get install apertium apertium-<pair> (for example apertium-eng-spa)",
    probe=_probe,
    backends={"tsl": ApertiumPair},
)
