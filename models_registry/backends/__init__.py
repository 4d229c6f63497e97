"""Backend families by name: ours, plus third-party ones from the entry-point group below.

A third-party package adds a family by declaring, in its pyproject,
`[project.entry-points."ocr_translate_serve.backends"] myfamily = "mypkg.module"`, where the
module defines `FAMILY = Family(...)` (see `base.py`).
"""

import importlib
import importlib.metadata
import logging
from functools import lru_cache

from .base import Family

ENTRY_POINT_GROUP = "ocr_translate_serve.backends"
BUILTIN = {name: f"{__name__}.{module}" for name, module in (
    ("easyocr", "easyocr"), ("rapidocr", "rapidocr"), ("tesseract", "tesseract"), ("apertium", "apertium"),
    ("huggingface", "huggingface"), ("original", "original"), ("openai", "openai_chat"))}

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def families() -> dict[str, Family]:
    modules = dict(BUILTIN)
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        modules.setdefault(point.name, point.value)
    found = {}
    for name, module in modules.items():
        try:
            found[name] = importlib.import_module(module).FAMILY
        except Exception as exc:  # a broken plugin must not take the server down
            log.error("backend family %s (%s) could not be imported: %s", name, module, exc)
    return found
