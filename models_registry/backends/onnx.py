"""ONNX Runtime sessions as every family that runs ONNX files makes them: sized to the replica."""

import logging
from pathlib import Path

from .base import Runtime

log = logging.getLogger(__name__)


def onnx_session(path: Path, runtime: Runtime):
    """A session on the replica's CPU threads (never more), or on its GPU when it has one and ONNX
    Runtime can use it.

    Its idle threads sleep instead of spinning. Spinning makes one model alone in one process faster
    (on the 2-core development machine, two threads: CRAFT on a 640x352 image 1025 -> 743 ms,
    EasyOCR's recognizer on 4 lines 108 -> 60 ms), but in the server the detector's and the
    recognizer's replicas share the cores, and spinning threads take them from each other: the
    default pipeline over HTTP, mean of 3-4 runs of each, images/s at 1/4/8 callers, spinning
    3.05/3.29/3.53, sleeping 3.28/4.07/4.23."""
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
        if onnx_runs_on_cuda():
            providers.insert(0, "CUDAExecutionProvider")
        else:
            log.warning("ONNX Runtime has no CUDA provider here (install onnxruntime-gpu): %s runs on the CPU",
                        path.name)
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)


def onnx_runs_on_cuda() -> bool:
    """Whether this ONNX Runtime can use a GPU (the `onnxruntime-gpu` build)."""
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def session_device(session) -> str:
    return "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
