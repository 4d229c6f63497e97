"""A scripted OpenAI-compatible chat server on loopback, for the failure paths of the `openai` family:
it answers the page schema or ignores it, fails with 500 a given number of times, answers slowly,
and records every request and the most requests it held at once.

Its "model" translates by a rule a test can check: `<dst language name>: <text upper-cased>`, with
the terms of a glossary in its system prompt given their translation (an obedient language model).
"""

import asyncio
import json
import threading
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from .ports import free_port
from .waiting import wait_for

MODEL = "scripted-model"


GLOSSARY_MARK = "(term: translation): "


def translated(text: str, dst_name: str, glossary: dict[str, str] | None = None) -> str:
    out = text.upper()
    for term, translation in (glossary or {}).items():
        out = out.replace(term.upper(), translation)
    return f"{dst_name}: {out}"


@dataclass
class Script:
    ignore_schema: bool = False
    """Answer pages in prose, as a server without structured output does."""
    drop_last_block: bool = False
    """Answer the page's JSON without its last block."""
    failures: int = 0
    """Answer this many chat requests with 500 before behaving."""
    delay_s: float = 0.0
    requests: list[dict] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0


class FakeChatServer:
    def __init__(self):
        self.script = Script()
        self.port = free_port()
        app = Starlette(routes=[Route("/v1/models", self._models), Route("/v1/chat/completions", self._chat,
                                                                         methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, 10, "the scripted chat server starting", interval_s=0.02)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self, **script) -> Script:
        self.script = Script(**script)
        return self.script

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    async def _models(self, request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def _chat(self, request: Request):
        script = self.script
        body = await request.json()
        script.requests.append(body)
        script.headers.append(dict(request.headers))
        script.in_flight += 1
        script.most_in_flight = max(script.most_in_flight, script.in_flight)
        try:
            if script.delay_s:
                await asyncio.sleep(script.delay_s)
            if script.failures:
                script.failures -= 1
                return PlainTextResponse("the model crashed", status_code=500)
            return JSONResponse(_completion(self._answer(body)))
        finally:
            script.in_flight -= 1

    def _answer(self, body: dict) -> str:
        system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
        dst_name = system.split(" to ")[1].split(".")[0].split(",")[0].strip()
        glossary = json.loads(system.split(GLOSSARY_MARK)[1]) if GLOSSARY_MARK in system else {}
        if "response_format" not in body and not user.startswith("{"):  # one block
            return translated(user, dst_name, glossary)
        if self.script.ignore_schema:
            return "Here are the translations you asked for."
        blocks = json.loads(user)
        answer = {number: translated(text, dst_name, glossary) for number, text in blocks.items()}
        if self.script.drop_last_block:
            answer.pop(list(blocks)[-1])
        return json.dumps(answer, ensure_ascii=False)


def _completion(content: str) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": MODEL,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]}
