"""The server's metrics, exported by Ray (the dashboard's Metrics view, Prometheus at each node's
metrics export port). Every name starts with `ocr_serve_`; Ray prefixes `ray_` on export.

Created lazily, once per replica process: Ray metrics must be made inside the worker that
records them. Model replicas import this module: it imports nothing of the pipeline (no store).
"""

from functools import cache

from ray.serve import metrics

_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]


@cache
def _stage_seconds() -> metrics.Histogram:
    return metrics.Histogram("ocr_serve_stage_seconds", "Time of one request's stage (decode, box, ocr, tsl), "
                             "queueing and batching included.", boundaries=_SECONDS, tag_keys=("stage", "model"))


@cache
def _cache_lookups() -> metrics.Counter:
    return metrics.Counter("ocr_serve_cache_lookups", "Inputs looked up in the store per stage (box, ocr, tsl, "
                           "lazy); result=hit found a stored result, miss ran the model.",
                           tag_keys=("stage", "result"))


@cache
def _rejected() -> metrics.Counter:
    return metrics.Counter("ocr_serve_rejected_requests", "Requests answered 503 because the server was full "
                           "(reason=in_flight: the ingress; queue_full: a model deployment; store_unavailable: the "
                           "database).", tag_keys=("reason",))


@cache
def _requests() -> metrics.Counter:
    return metrics.Counter("ocr_serve_requests", "Requests the ingress answered, by path_kind: bare (the default "
                           "profile's paths) or profile (a reader profile's, under /r/<key>/); never which profile, so "
                           "that neither a key nor the number of profiles reaches the metrics' labels.",
                           tag_keys=("path_kind",))


@cache
def _batch_size() -> metrics.Histogram:
    return metrics.Histogram("ocr_serve_batch_size", "Items (crops, texts) per model call.",
                             boundaries=[1, 2, 4, 8, 16, 32, 64, 128], tag_keys=("model",))


@cache
def _load_seconds() -> metrics.Histogram:
    return metrics.Histogram("ocr_serve_model_load_seconds", "Time to load a model into a replica.",
                             boundaries=_SECONDS, tag_keys=("model",))


@cache
def _loaded_models() -> metrics.Gauge:
    return metrics.Gauge("ocr_serve_loaded_models", "Models loaded in this replica.")


def stage_timed(stage: str, model_id: str, seconds: float) -> None:
    _stage_seconds().observe(seconds, tags={"stage": stage, "model": model_id})


def cache_looked_up(stage: str, hits: int, misses: int) -> None:
    for result, count in (("hit", hits), ("miss", misses)):
        if count:
            _cache_lookups().inc(count, tags={"stage": stage, "result": result})


def request_rejected(reason: str) -> None:
    _rejected().inc(tags={"reason": reason})


def request_answered(path_kind: str) -> None:
    _requests().inc(tags={"path_kind": path_kind})


def batch_served(model_id: str, items: int, loaded_now: int) -> None:
    _batch_size().observe(items, tags={"model": model_id})
    _loaded_models().set(loaded_now)  # refreshed while serving, not only when a model comes or goes


def model_loaded(model_id: str, seconds: float, loaded_now: int) -> None:
    _load_seconds().observe(seconds, tags={"model": model_id})
    _loaded_models().set(loaded_now)


def model_unloaded(loaded_now: int) -> None:
    _loaded_models().set(loaded_now)
