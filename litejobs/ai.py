"""AI extraction: a prompt and a page's markdown sent to an OpenAI-compatible chat API ([ai])."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from litejobs.config import AiConfig

log = logging.getLogger("litejobs.ai")

#: page text beyond this is cut before it is sent: a local model's context is small
MAX_PAGE_CHARS = 60_000
FORMATS = ("markdown", "json")

_INSTRUCTIONS = {
    "markdown": "You extract information from a web page. Answer the user's request using only the page "
    "content below. Answer in Markdown, with no preamble.",
    "json": "You extract information from a web page. Answer the user's request using only the page "
    "content below. Answer with one JSON value and nothing else: no prose, no code fences.",
}


#: a job's time limit, as `ai_error` names it
_LIMITS = "its timeout_s; inline, [limits] sync_timeout_s"


class AiError(Exception):
    """The model server could not answer."""


@dataclass(frozen=True)
class Completion:
    text: str
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class Extraction:
    """What a prompt produced: the answer, or the page markdown when extraction failed."""

    content: Any
    failed: bool
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    elapsed_ms: float = 0.0
    model: str = ""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def outputs(self) -> dict[str, Any]:
        extra = {"ai_error": self.error} if self.error else {}
        return {"content": self.content, "ai_extraction_failed": self.failed, **extra}

    def stats(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }


@dataclass
class ChatClient:
    """`async with ChatClient(config.ai) as chat: await chat.complete(messages)`.

    The endpoint is one the operator configured, not a job's target, so it is reached directly,
    outside the network policy that guards fetches (a model on 127.0.0.1 works on a public server)."""

    config: AiConfig
    session: aiohttp.ClientSession | None = None
    _owned: bool = field(default=False, init=False)

    async def __aenter__(self) -> ChatClient:
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
            self._owned = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._owned and self.session is not None:
            await self.session.close()
            self.session = None

    @property
    def endpoint(self) -> str:
        return self.config.base_url.rstrip("/") + "/chat/completions"

    async def complete(self, messages: list[dict[str, str]]) -> Completion:
        """One chat completion; raises AiError on any failure, with a message a person can act on.

        The message reaches every API caller, so it names no endpoint and quotes no answer body (the
        operator's model server is internal): those details go to the server's log."""
        assert self.session is not None, "use ChatClient as an async context manager"
        body: dict[str, Any] = {"messages": messages, "temperature": 0}
        if self.config.model:
            body["model"] = self.config.model
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        try:
            async with self.session.post(self.endpoint, json=body, headers=headers) as resp:
                if resp.status != 200:
                    detail = (await resp.read())[:300].decode(errors="replace")
                    log.warning("model server %s answered HTTP %s: %s", self.endpoint, resp.status, detail)
                    raise AiError(f"the model server answered HTTP {resp.status} {(resp.reason or '')[:60]}".rstrip())
                answer = await resp.json(content_type=None)
        except TimeoutError:
            raise AiError(f"the model did not answer within [ai] timeout_s ({self.config.timeout_s:g} s)") from None
        except aiohttp.ClientError as exc:
            log.warning("model server %s failed: %r", self.endpoint, exc)
            raise AiError(f"the model server could not be reached or broke off ({type(exc).__name__})") from None
        except ValueError:
            raise AiError("the model server's answer is not JSON") from None
        return _completion_of(answer)


def _completion_of(answer: Any) -> Completion:
    try:
        text = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise AiError("the model server's answer has no choices[0].message.content") from None
    if not isinstance(text, str):
        raise AiError("the model's message content is not text")
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
    return Completion(text, _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def messages_for(prompt: str, markdown: str, output_format: str) -> list[dict[str, str]]:
    page = markdown[:MAX_PAGE_CHARS]
    return [
        {"role": "system", "content": _INSTRUCTIONS[output_format]},
        {"role": "user", "content": f"{prompt}\n\n--- page content ---\n{page}"},
    ]


def parse_answer(text: str, output_format: str) -> Any:
    """The model's text as the asked-for format; JSON answers may come wrapped in a code fence."""
    if output_format != "json":
        return text.strip()
    cleaned = text.strip()
    if cleaned.startswith("```"):
        cleaned = cleaned.split("\n", 1)[1] if "\n" in cleaned else ""
        cleaned = cleaned.rsplit("```", 1)[0]
    try:
        return json.loads(cleaned)
    except ValueError:
        raise AiError("the model's answer is not valid JSON") from None


async def extract_with_prompt(
    config: AiConfig, prompt: str, markdown: str, output_format: str = "markdown", *, deadline: float | None = None
) -> Extraction:
    """Ask the configured model; on no model or any failure, the markdown with `failed` set.

    `deadline` (event-loop time) is when the job must have its answer: a model still busy then is
    given up like a failed one, so a slow model costs the prompt's answer, never the fetched page."""
    if not config.base_url:
        return Extraction(markdown, True, "no model server is configured ([ai] base_url)", model=config.model)
    loop = asyncio.get_running_loop()
    started = loop.time()
    left_s = None if deadline is None else deadline - started
    completion = Completion("")
    try:
        if left_s is not None and left_s <= 0:
            raise AiError(f"the model was not asked: the job's time limit left no time for it ({_LIMITS})")
        async with asyncio.timeout_at(deadline):
            async with ChatClient(config) as chat:
                completion = await chat.complete(messages_for(prompt, markdown, output_format))
        content, failed, error = parse_answer(completion.text, output_format), False, None
    except AiError as exc:
        content, failed, error = markdown, True, str(exc)
    except TimeoutError:  # the deadline's, not [ai] timeout_s (ChatClient.complete reports that one)
        if left_s is None:
            raise
        content, failed = markdown, True
        error = f"the model did not answer within the {left_s:.1f} s the job's time limit left it ({_LIMITS})"
    return Extraction(
        content,
        failed,
        error,
        input_tokens=completion.input_tokens,
        output_tokens=completion.output_tokens,
        elapsed_ms=(loop.time() - started) * 1000,
        model=config.model,
    )
