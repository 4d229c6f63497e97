"""The application builder: binds the ingress and the three model deployments from typed args.

`serve run configs/local.yaml` (or any config naming `graph:build_app`) validates the config's
`args` into `AppArgs` and takes resources from its `deployments` list. `serve run graph:app`
runs the embedded default, which is exactly `configs/local.yaml`.
"""

from pathlib import Path
from typing import Any

import yaml
from ray.serve import Application

from core.settings import AppArgs, BatchedDeploymentSettings
from deployments.box_detector import BoxDetector
from deployments.ingress import Ingress
from deployments.ocr_reader import OCRReader
from deployments.translator import Translator

DEPLOYMENTS = {d.name: d for d in (Ingress, BoxDetector, OCRReader, Translator)}
LOCAL_CONFIG = Path(__file__).resolve().parent / "configs" / "local.yaml"


def bind_graph(args: AppArgs, deployment_options: dict[str, dict[str, Any]] | None = None) -> Application:
    """Bind the graph; `deployment_options` (name -> Serve options) play the config's `deployments`."""
    options = deployment_options or {}
    unknown = set(options) - set(DEPLOYMENTS)
    if unknown:
        raise ValueError(f"no deployment named {sorted(unknown)} in the graph (have {sorted(DEPLOYMENTS)})")

    def configured(name: str):
        return DEPLOYMENTS[name].options(**options[name]) if name in options else DEPLOYMENTS[name]

    registry = (args.registry_dirs, args.weight_sources, args.model_settings)

    def batched(name: str, settings: BatchedDeploymentSettings):
        built_with, batching = settings.split()  # batching as Serve's user_config, into `reconfigure`
        return configured(name).options(user_config=batching.model_dump()).bind(built_with, *registry)

    box = batched("BoxDetector", args.box_detector)
    ocr = batched("OCRReader", args.ocr_reader)
    tsl = batched("Translator", args.translator)
    return configured("Ingress").bind(args, box, ocr, tsl)


def build_app(args: AppArgs) -> Application:
    """Serve's entry point for config files (`import_path: graph:build_app`)."""
    return bind_graph(args)


def read_config(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The first application of a Serve config file: its raw args, and options per deployment."""
    application = yaml.safe_load(Path(path).read_text())["applications"][0]
    options = {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in application.get("deployments", [])}
    return application.get("args", {}), options


def app_from_config(path: Path, option_overrides: dict[str, dict[str, Any]] | None = None,
                    **arg_overrides: Any) -> Application:
    """The first application of a Serve config file, args and deployment options included;
    `option_overrides` replaces options of named deployments, `arg_overrides` top-level args."""
    args, options = read_config(path)
    for name, overrides in (option_overrides or {}).items():
        options[name] = {**options.get(name, {}), **overrides}
    return bind_graph(AppArgs.model_validate({**args, **arg_overrides}), options)


def __getattr__(name: str) -> Application:
    """`graph:app` (`serve run graph:app`, `serve build`), the embedded default, built when asked for:
    importing the module builds nothing."""
    if name == "app":
        return app_from_config(LOCAL_CONFIG)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
