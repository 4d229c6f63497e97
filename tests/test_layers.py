"""Dependencies point one way: leaf modules -> model registry -> pipeline -> deployments -> graph -> bulk runs.

A module may import its own layer and the layers before it, never a later one (function-level imports
count too). A new module must be given a layer here, so the direction stays a decision.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("leaf", ("core",)),
    ("model registry", ("models_registry",)),
    ("pipeline", ("service",)),
    ("deployments", ("deployments",)),
    ("graph", ("graph",)),
    ("bulk runs", ("bulk",)),
]
PACKAGES = ("core", "models_registry", "service", "deployments", "bulk", "graph")


def layer_of(module: str) -> int | None:
    """Index of the module's layer; None for a module outside the project (a library) or a package's
    __init__ that only documents it."""
    if module.split(".")[0] not in PACKAGES or module in ("core", "service", "deployments", "bulk"):
        return None
    for index, (_name, prefixes) in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return index
    raise AssertionError(f"{module} has no layer in tests/test_layers.py: give it one")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every project module the file imports, anywhere in it, relative imports resolved."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            # `from . import metrics` names modules; `from .store import Store` names a module's contents.
            found.update(f"{target}.{alias.name}" if not node.module else target for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def project_files() -> list[Path]:
    files = [ROOT / "graph.py"]
    for package in PACKAGES[:-1]:
        files += sorted(path for path in (ROOT / package).rglob("*.py") if "versions" not in path.parts)
    return files


@pytest.mark.parametrize("path", project_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_imports_point_to_the_same_or_an_earlier_layer(path):
    own = layer_of(module_name(path))
    if own is None:
        return
    for name in imported(path):
        other = layer_of(name)
        assert other is None or other <= own, (f"{module_name(path)} ({LAYERS[own][0]}) imports {name} "
                                               f"({LAYERS[other][0]}), a later layer")


def test_model_replicas_import_no_database_code():
    """What a model replica's process imports: its deployment module (Serve imports it by name)."""
    code = ("import sys\nimport deployments.box_detector, deployments.ocr_reader, deployments.translator\n"
            "print(sorted(m for m in ('sqlalchemy', 'alembic', 'service.store', 'service.service')"
            " if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"RAY_AUTH_MODE": "disabled", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_importing_the_graph_builds_nothing():
    """`graph:app` is built when Serve asks for it, not when a test or a tool imports the module."""
    from ray.serve import Application

    import graph

    assert "app" not in vars(graph) and isinstance(graph.app, Application)
