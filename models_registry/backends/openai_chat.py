"""Translation by a language model behind an OpenAI-compatible chat API (Ollama, vLLM, llama.cpp's
server, LM Studio, Ray Serve LLM): one entry per server and model, in the operator's registry files.

A page is one chat request: every block of one image, in reading order, numbered, with the entry's
system prompt, and a JSON-schema answer format that maps each block's number to its translation, so
the model sees who speaks and what the page is about. A server that ignores the schema (or a model
that answers something else) gets one plain request per block instead. Calls are bounded per server
(`max_concurrent`, shared by every entry naming the same base URL in this replica): past it a page
waits `queue_timeout_s` for a slot and is then answered 503, so a slow server gets back-pressure
instead of a pile-up. Connection failures, 5xx and 429 are retried with exponential backoff
(tenacity); a server still failing is a 502, one too slow a 504.
"""

import json
import logging
import os
import threading
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx
import tenacity
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from core import languages
from core.errors import BadGateway, GatewayTimeout, ModelLoadError, ServeError, ServerBusy
from core.glossary import NO_TERMS, Glossary
from core.options import OptionSpec
from core.settings import WeightSources

from ..schema import ModelEntry
from .base import Family, TranslationBackend, probe_distribution

DEFAULT_SYSTEM_PROMPT = (
    "You translate the text of one image (a comic page, a sign, a screenshot) from {src} to {dst}. "
    "The user sends its text blocks in reading order, as a JSON object from block number to text. "
    "Translate every block into natural {dst}, keeping the page's context (who speaks, what is shown) "
    "consistent from block to block, and answer only with a JSON object from the same block numbers to "
    "their translations."
)
BLOCK_PROMPT = (
    "Translate this text from {src} to {dst}. Answer with the translation only, no notes or quotes."
)


class OpenAIChatSettings(BaseModel):
    """An entry's `settings`: where the server is and how to talk to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(pattern=r"^https?://")
    """The API root, up to and including `/v1` (Ollama: http://127.0.0.1:11434/v1)."""
    model: str
    """The server's name for the model (Ollama: `qwen2.5:7b`)."""
    api_key_env: str | None = None
    """The environment variable holding the API key (never the key itself: configs are not secrets)."""
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    """The page prompt; `{src}` and `{dst}` become the languages' English names."""
    response_format: Literal["json_schema", "json_object", "none"] = "json_schema"
    """How the JSON schema of the answer is asked for: OpenAI's `json_schema` (vLLM, Ollama, LM Studio,
    llama.cpp's llama-server); `json_object` with the schema inside (llama-cpp-python's server);
    `none` for a server that rejects `response_format` (the prompt still asks for the JSON object)."""
    timeout_s: PositiveFloat = 120
    """Longest wait for one answer; past it the request is answered 504."""
    max_retries: int = Field(default=2, ge=0, le=10)
    """Retries of a failed connection, 5xx or 429, with exponential backoff."""
    max_concurrent: PositiveInt = 4
    """Requests in flight to this server from one replica; further pages wait for a slot."""
    queue_timeout_s: float = Field(default=10, ge=0)
    """How long a page waits for a slot before it is answered 503 (Retry-After)."""
    max_fallback_blocks: int = Field(default=8, ge=0, le=500)
    """When a page's answer is not the JSON asked for, pages of up to this many blocks are translated
    one request per block; a longer one is answered 502 instead of costing a call per block."""


log = logging.getLogger(__name__)
_SLOTS: dict[str, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


def _slots_for(base_url: str, size: int) -> threading.BoundedSemaphore:
    """The in-flight slots of one server, shared by every entry (and page) of this replica naming it."""
    with _SLOTS_LOCK:
        return _SLOTS.setdefault(base_url.rstrip("/"), threading.BoundedSemaphore(size))


class _Retryable(Exception):
    """A failure worth another try (connection refused, 5xx, 429); the last one becomes a 502. Its
    arguments: what clients are told, and what only the log keeps (the server's words)."""


class OpenAIChatTranslator(TranslationBackend):
    Settings = OpenAIChatSettings
    settings: OpenAIChatSettings
    translates_pages: ClassVar[bool] = True
    calls_a_server: ClassVar[bool] = True
    declared_options: ClassVar[dict[str, OptionSpec]] = {
        "temperature": OptionSpec(type="float", default=0.2, minimum=0, maximum=2,
                                  description="Sampling temperature: 0 always picks the likeliest words."),
        "max_tokens": OptionSpec(type="int", default=2048, minimum=16, maximum=16384,
                                 description="Longest answer in tokens, for a whole page."),
    }

    @classmethod
    def missing_weights(cls, entry: ModelEntry, weights: WeightSources) -> str | None:
        variable = entry.settings.get("api_key_env")
        if variable and not os.environ.get(variable):
            return f"the environment variable {variable} (its server's API key) is not set"
        return None

    def __init__(self, entry: ModelEntry, runtime):
        super().__init__(entry, runtime)
        headers = {}
        if self.settings.api_key_env:
            headers["Authorization"] = f"Bearer {os.environ[self.settings.api_key_env]}"
        self.client = httpx.Client(base_url=self.settings.base_url.rstrip("/") + "/", headers=headers,
                                   timeout=self.settings.timeout_s)
        self.slots = _slots_for(self.settings.base_url, self.settings.max_concurrent)
        try:
            listed = self._call("GET", "models")
        except (BadGateway, GatewayTimeout) as exc:
            self.client.close()
            raise ModelLoadError(exc.message) from None
        names = {model.get("id") for model in listed.get("data", []) if isinstance(model, dict)}
        if names and self.settings.model not in names:
            self.client.close()
            raise self._failed(ModelLoadError, f"{self._server} serves no model {self.settings.model!r}",
                               f"it serves {', '.join(sorted(map(str, names)))}")

    @property
    def engine(self) -> str:
        address = urlsplit(self.settings.base_url)
        return f"openai-compatible server {address.scheme}://{address.hostname}:{address.port or ''} " \
               f"({self.settings.model})"

    @property
    def _server(self) -> str:
        """The server as clients hear of it: by the entry, never by its address, which may hold
        credentials or name a private host (the log keeps it)."""
        return f"The translation server of {self.entry.id}"

    def _failed(self, error: type[ServeError], public: str, detail: str = "") -> ServeError:
        """The client's error, saying what failed; the log's line, with the address and what the server said."""
        log.warning("%s at %s: %s%s", self.entry.id, self.settings.base_url, public, f" ({detail})" if detail else "")
        return error(f"{public}.")

    def close(self) -> None:
        self.client.close()

    # -- translation ---------------------------------------------------------------------------
    def translate(self, texts: list[str], src: str, dst: str, options: dict[str, Any]) -> list[str]:
        return self.translate_page(texts, src, dst, options, NO_TERMS)

    def translate_page(self, texts: list[str], src: str, dst: str, options: dict[str, Any],
                       glossary: Glossary) -> list[str]:
        """One page: every text in one request, or one request per text when the answer is not the
        JSON object asked for; the glossary's terms go into the system prompt either way."""
        names = {"src": languages.name_of(src), "dst": languages.name_of(dst)}
        terms = _glossary_prompt(glossary)
        page = self._page(texts, names, options, terms)
        if page is not None:
            return page
        most = self.settings.max_fallback_blocks
        if len(texts) > most:
            raise self._failed(BadGateway, f"{self._server} did not answer the page in the JSON asked for, and its "
                                           f"{len(texts)} blocks are more than the {most} translated one request each")
        return [self._block(text, names, options, terms) for text in texts]

    def _page(self, texts: list[str], names: dict[str, str], options: dict[str, Any], terms: str) -> list[str] | None:
        numbers = [str(n) for n in range(1, len(texts) + 1)]
        body = self._body(options, [
            {"role": "system", "content": self.settings.system_prompt.format(**names) + terms},
            {"role": "user", "content": json.dumps(dict(zip(numbers, texts, strict=True)), ensure_ascii=False)},
        ])
        schema = {"type": "object", "properties": {number: {"type": "string"} for number in numbers},
                  "required": numbers, "additionalProperties": False}
        if self.settings.response_format == "json_schema":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "translations", "strict": True, "schema": schema}}
        elif self.settings.response_format == "json_object":
            body["response_format"] = {"type": "json_object", "schema": schema}
        answer = _page_answer(self._content(self._call("POST", "chat/completions", body)), numbers)
        return None if answer is None else [answer[number] for number in numbers]

    def _block(self, text: str, names: dict[str, str], options: dict[str, Any], terms: str) -> str:
        body = self._body(options, [{"role": "system", "content": BLOCK_PROMPT.format(**names) + terms},
                                    {"role": "user", "content": text}])
        return self._content(self._call("POST", "chat/completions", body)).strip()

    def _body(self, options: dict[str, Any], messages: list[dict[str, str]]) -> dict[str, Any]:
        return {"model": self.settings.model, "messages": messages, "stream": False,
                "temperature": options["temperature"], "max_tokens": options["max_tokens"]}

    def _content(self, answer: dict[str, Any]) -> str:
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise self._failed(BadGateway, f"{self._server} answered without a chat message") from None
        if not isinstance(content, str):
            raise self._failed(BadGateway, f"{self._server} answered a message without text")
        return content

    # -- HTTP ----------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict | None = None) -> dict[str, Any]:
        """One API call within this server's slots, retried as the settings say; the JSON answer."""
        if not self.slots.acquire(timeout=self.settings.queue_timeout_s):
            raise ServerBusy(f"{self._server} is busy with {self.settings.max_concurrent} requests from this "
                             f"replica; try again in a moment.")
        try:
            retrying = tenacity.Retrying(
                retry=tenacity.retry_if_exception_type(_Retryable), reraise=True,
                stop=tenacity.stop_after_attempt(self.settings.max_retries + 1),
                wait=tenacity.wait_exponential(multiplier=0.5, max=8))
            try:
                return retrying(self._attempt, method, path, body)
            except _Retryable as exc:
                raise self._failed(BadGateway, f"{self._server} failed: {exc.args[0]}", exc.args[1]) from None
        finally:
            self.slots.release()

    def _attempt(self, method: str, path: str, body: dict | None) -> dict[str, Any]:
        try:
            response = self.client.request(method, path, json=body)
        except httpx.TimeoutException:
            raise self._failed(GatewayTimeout, f"{self._server} did not answer within "
                                               f"{self.settings.timeout_s:g} s") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"it could not be reached ({type(exc).__name__})", str(exc)) from None
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"it answered {response.status_code}", response.text[:300])
        if response.status_code >= 400:
            raise self._failed(BadGateway, f"{self._server} refused the request ({response.status_code})",
                               response.text[:300])
        try:
            return response.json()
        except ValueError:
            raise self._failed(BadGateway, f"{self._server} answered something other than JSON",
                               response.text[:300]) from None


def _glossary_prompt(glossary: Glossary) -> str:
    """The reader's terms for the prompt: one JSON line, so that quotes or arrows in a term stay data."""
    if not glossary:
        return ""
    return ("\nAlways translate these terms exactly as given (term: translation): "
            + json.dumps(glossary.as_dict(), ensure_ascii=False))


def _page_answer(content: str, numbers: list[str]) -> dict[str, str] | None:
    """The block number -> translation object the page asked for, or None when the answer is not it
    (not JSON, a block missing, a translation that is not text)."""
    try:
        answer = json.loads(content, strict=False)  # raw control characters in a string: some grammars allow them
    except ValueError:
        return None
    if not isinstance(answer, dict) or any(not isinstance(answer.get(number), str) for number in numbers):
        return None
    return {number: answer[number].strip() for number in numbers}


FAMILY = Family(
    name="openai",
    description="Language models behind an OpenAI-compatible chat API (Ollama, vLLM, llama.cpp, LM Studio), "
    "translating a whole page per request.",
    homepage="https://platform.openai.com/docs/api-reference/chat",
    install_hint="pip install httpx tenacity (both come with ocr-translate-serve)",
    probe=lambda: probe_distribution("tenacity", "pip install tenacity"),
    backends={"tsl": OpenAIChatTranslator},
)
