"""One exception type per failure family; the ingress maps `status` to the HTTP answer in one place.

They must pickle cleanly: model deployments raise them and Ray re-raises them in the ingress.
"""


class ServeError(Exception):
    """Base of every error that reaches the client as `{"error": message}`."""

    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __reduce__(self):
        return (type(self), (self.message,))


class BadRequest(ServeError):
    status = 400


class Unauthorized(ServeError):
    status = 401


class Forbidden(ServeError):
    status = 403


class NotFound(ServeError):
    status = 404


class NotAcceptable(ServeError):
    """Lazy call without a stored result: the extension then sends the image."""

    status = 406


class RequestTimeout(ServeError):
    status = 408


class PayloadTooLarge(ServeError):
    status = 413


class TooManyRequests(ServeError):
    status = 429


class BadGateway(ServeError):
    """A server the model calls (an LLM's chat API) failed or answered nonsense."""

    status = 502


class StoreUnavailable(ServeError):
    """The database cannot be reached (PostgreSQL restarting or failing over, SQLite locked past its
    wait): raised by the store from the driver's error, answered 503 with Retry-After."""

    status = 503
    retry_after_s = 5
    """A database restarted or failed over answers again within seconds; the pool reconnects by itself."""

    def __init__(self, message: str = "The server's database is unavailable; try again in a few seconds."):
        super().__init__(message)


class ServerBusy(ServeError):
    """Every slot to a server the model calls is taken: the client retries after Retry-After."""

    status = 503


class GatewayTimeout(ServeError):
    """A server the model calls did not answer in time."""

    status = 504


class LanguagesNotSet(ServeError):
    status = 512


class ModelsNotSet(ServeError):
    status = 513


class ModelLoadError(BadRequest):
    """A model could not be loaded (missing software or weights): `set_models` answers 400."""


class ModelRunError(ServeError):
    """A loaded model failed on an input; the server keeps serving."""

    status = 500
