"""ONNX Runtime sessions as every family that runs ONNX files makes them: sized to the replica."""

import logging
from pathlib import Path

from .base import Runtime

log = logging.getLogger(__name__)


def onnx_session(path: Path, runtime: Runtime):
    """A session on the replica's CPU threads (never more; idle threads sleep instead of spinning, as
    other replicas share the cores), or on its GPU when it has one and ONNX Runtime can use it."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = runtime.threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if runtime.device == "cuda":
        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        else:
            log.warning("ONNX Runtime has no CUDA provider here (install onnxruntime-gpu): %s runs on the CPU",
                        path.name)
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)


def session_device(session) -> str:
    return "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
