"""Dependencies point one way: leaf modules -> model registry -> inference -> pipeline -> deployments -> graph
-> bulk runs.

A module may import its own layer and the layers before it, never a later one (function-level imports
count too). A new module must be given a layer here, so the direction stays a decision. Bulk runs host
their models through the inference layer, as the deployments do, never through a Serve deployment.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("leaf", ("core",)),
    ("model registry", ("models_registry",)),
    ("inference", ("inference",)),
    ("pipeline", ("service",)),
    ("deployments", ("deployments",)),
    ("graph", ("graph",)),
    ("bulk runs", ("bulk",)),
]
PACKAGES = ("core", "models_registry", "inference", "service", "deployments", "bulk", "graph")


def layer_of(module: str) -> int | None:
    """Index of the module's layer; None for a module outside the project (a library) or a package's
    __init__ that only documents it."""
    if module.split(".")[0] not in PACKAGES or module in ("core", "inference", "service", "deployments", "bulk"):
        return None
    for index, (_name, prefixes) in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return index
    raise AssertionError(f"{module} has no layer in tests/unit/test_layers.py: give it one")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_in(path: Path) -> set[str]:
    """Every module the file imports, anywhere in it, relative imports resolved."""
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
            if node.module:
                found.add(target)
            # `from . import metrics` and `from ray import serve` name modules; `from .store import Store`
            # names a module's contents, which belong to the module's layer.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def imported(path: Path) -> set[str]:
    """Every project module the file imports."""
    return {name for name in imports_in(path) if name.split(".")[0] in PACKAGES}


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


def test_bulk_runs_import_no_serve_deployment():
    """A bulk run's actors load and run their models through the inference layer, as the deployments do;
    the layer order alone would let bulk/ import deployments/."""
    found = {f"{module_name(path)} imports {name}" for path in (ROOT / "bulk").rglob("*.py")
             for name in imported(path) if name.split(".")[0] == "deployments"}
    assert not found


@pytest.mark.parametrize("path", sorted((ROOT / "inference").rglob("*.py")), ids=lambda path: path.name)
def test_the_inference_layer_imports_no_serve_and_no_database(path):
    """Bulk runs' actors and unit tests run it without a Serve app or a store."""
    found = {name for name in imports_in(path)
             for library in ("ray.serve", "sqlalchemy", "alembic") if f"{name}.".startswith(f"{library}.")}
    assert not found, f"{module_name(path)} imports {sorted(found)}"


def test_model_replicas_import_no_database_code():
    """What a model replica's process imports: its deployment module (Serve imports it by name), and
    through it nothing of the pipeline layer (the store, its database drivers)."""
    code = ("import sys\nimport deployments.box_detector, deployments.ocr_reader, deployments.translator\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('service', 'sqlalchemy', 'alembic')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_importing_the_graph_builds_nothing():
    """`graph:app` is built when Serve asks for it, not when a test or a tool imports the module."""
    from ray.serve import Application

    import graph

    assert "app" not in vars(graph) and isinstance(graph.app, Application)


def test_tests_import_the_support_package_never_another_test_module():
    """What tests share lives in tests/support/ (docs/testing.md): a test module imported by another runs
    its fixtures and module-level set-up twice, and breaks when it moves."""
    tests = ROOT / "tests"
    found = set()
    for path in tests.rglob("*.py"):
        found.update(f"{path.relative_to(tests)} imports {name}" for name in imports_in(path)
                     if any(part.startswith("test_") or part == "conftest" for part in name.split(".")))
    assert not found
