"""The HTTP wire format: OpenAI chat completions with the ECG as an `ecg` content part (base64 .npy).

Why this shape. vLLM's OpenAI server parses a fixed set of content parts (text, image_url, input_audio, audio_url,
video_url, image/audio embeds, prompt_embeds; vllm/entrypoints/chat_utils.py) and the authors' plugin
(`ecg_r1.vllm_plugin`) registers a model, a processor and the `ecg` modality for `multi_modal_data`, but no chat
content part. So a stock `vllm serve` cannot receive a 12-lead signal over /v1/chat/completions at all; the endpoint
needs a thin serving shim in front of the engine (it decodes the part below and calls the engine with
`multi_modal_data={"ecg": array}`). Choices:
* a content part of its own type, `{"type": "ecg", "ecg": {...}}`, where the `<ecg>` marker stood in the prompt.
  A server that does not understand it rejects the request (vLLM answers 400 for an unknown part type); an extra
  top-level field (`extra_body`) would be silently ignored by vLLM and the model would "interpret" no ECG at all.
  Faking it as `input_audio` would route the signal into an audio processor.
* the array as base64 of a .npy file (float32, shape (12, 5000)): .npy carries dtype, shape and byte order, it
  loads with `allow_pickle=False` (vLLM's own *_embeds parts are base64 `torch.save` pickles, unsafe to load from a
  network), and it is exact (JSON numbers would double the size and round). ~320 KB per request.
* `fs`, `leads` and `units` travel with it, so the server can check rate and lead order (ECG-R1's reference code
  does not), plus a SHA-256 of the .npy bytes.
Sampling is the authors': temperature 0, max_tokens 2048. The response is a standard chat.completion; when the
server splits the thinking into `message.reasoning_content` (vLLM reasoning parsers) it is put back in <think>.

Both ends live here, in pairs: `build_chat_request` / `parse_chat_request` (client / server side of a request),
`build_chat_response` / `read_chat_response`, `error_body` / `error_message`; `encode_ecg_part` / `decode_ecg_part`.
The serving shim (serve.py) is the server side.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.reasoner.errors import ReasonerUnavailable
from engine.reasoner.normalise import ECGR1_FS, ECGR1_LEADS, ECGR1_SAMPLES
from engine.reasoner.prompt import ECG_MARKER, ECGR1_MAX_TOKENS, ECGR1_TEMPERATURE, split_prompt

WIRE_FORMAT = "twiwatch-ecg-npy/1"
CHAT_PATH = "/v1/chat/completions"


def encode_ecg_part(ecg: np.ndarray) -> dict[str, Any]:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(ecg, dtype=np.float32), allow_pickle=False)
    raw = buf.getvalue()
    return {"type": "ecg", "ecg": {
        "format": WIRE_FORMAT, "encoding": "npy+base64", "data": base64.b64encode(raw).decode("ascii"),
        "sha256": hashlib.sha256(raw).hexdigest(), "dtype": "float32", "shape": [12, ECGR1_SAMPLES],
        "fs": ECGR1_FS, "leads": list(ECGR1_LEADS), "units": "mV",
    }}


def decode_ecg_part(part: dict[str, Any]) -> np.ndarray:
    """Server side: the array from an `ecg` content part, checked; ValueError says what is wrong."""
    ecg = part.get("ecg") if isinstance(part, dict) else None
    if not isinstance(ecg, dict):
        raise ValueError("ecg content part has no 'ecg' object")
    if ecg.get("format") != WIRE_FORMAT:
        raise ValueError(f"ecg format {ecg.get('format')!r}, expected {WIRE_FORMAT!r}")
    if list(ecg.get("leads") or []) != list(ECGR1_LEADS):
        raise ValueError(f"lead order {ecg.get('leads')!r} is not ECG-R1's {list(ECGR1_LEADS)}")
    if float(ecg.get("fs") or 0) != ECGR1_FS or ecg.get("units") != "mV":
        raise ValueError(f"fs {ecg.get('fs')!r} / units {ecg.get('units')!r}: expected {ECGR1_FS:g} Hz, mV")
    try:
        raw = base64.b64decode(ecg.get("data") or "", validate=True)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"ecg data is not base64: {exc}") from None
    if hashlib.sha256(raw).hexdigest() != ecg.get("sha256"):
        raise ValueError("ecg data does not match its sha256")
    try:
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable payload is the client's error
        raise ValueError(f"ecg data is not a .npy array: {exc}") from None
    if arr.shape != (12, ECGR1_SAMPLES) or arr.dtype != np.float32 or not np.isfinite(arr).all():
        raise ValueError(f"ecg array {arr.shape} {arr.dtype}: expected finite float32 (12, {ECGR1_SAMPLES})")
    return arr


def build_chat_request(ecg: np.ndarray, prompt: str, *, model: str, system_prompt: str | None,
                       max_tokens: int = ECGR1_MAX_TOKENS) -> dict[str, Any]:
    before, after = split_prompt(prompt)
    content: list[dict[str, Any]] = []
    if before.strip():
        content.append({"type": "text", "text": before})
    content.append(encode_ecg_part(ecg))
    if after.strip():
        content.append({"type": "text", "text": after})
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": content})
    return {"model": model, "messages": messages, "temperature": ECGR1_TEMPERATURE, "max_tokens": max_tokens,
            "n": 1, "stream": False}


@dataclass(frozen=True)
class ChatRequest:
    """A checked chat request, server side: what `build_chat_request` was given, back again."""
    ecg: np.ndarray  # (12, 5000) float32, ECG-R1 lead order, 500 Hz, mV
    prompt: str  # the user text with `<ecg>` exactly once, where the ecg part stood
    system_prompt: str | None
    model: str | None  # as the client named it (None: not given)
    max_tokens: int
    temperature: float


# Request fields the shim cannot honour: refused rather than silently ignored (like the `extra_body` trap above).
_UNSUPPORTED = ("tools", "functions", "tool_choice", "response_format", "stop", "logprobs", "top_logprobs")


def _text_of(content: Any, role: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "\n".join(str(p.get("text", "")) for p in content)
    raise ValueError(f"{role} message content must be text")


def parse_chat_request(payload: Any, *, max_tokens_limit: int = ECGR1_MAX_TOKENS) -> ChatRequest:
    """Server side of `build_chat_request`: check a decoded JSON body; ValueError says what is wrong.

    Accepted: at most one system message (text), exactly one user message whose content parts are text and
    exactly one `ecg` part; temperature (default 0) and max_tokens / max_completion_tokens (default 2048, at
    most `max_tokens_limit`); n = 1; no streaming. Text parts are joined with newlines on each side of the ECG
    (as vLLM joins text parts), so `parse(build(ecg, prompt))` gives back the ECG bit for bit and the prompt with
    `<ecg>` where it was (first, when the prompt had no marker or only whitespace before it).
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list) or not payload["messages"]:
        raise ValueError("body must be a JSON object with a non-empty 'messages' list")
    if payload.get("stream"):
        raise ValueError("stream=true is not supported: ask for one non-streamed completion")
    if payload.get("n") not in (None, 1):
        raise ValueError(f"n={payload.get('n')!r}: exactly one choice (n=1) is generated")
    present = [k for k in _UNSUPPORTED if payload.get(k) not in (None, False, [], "")]
    if present:
        raise ValueError(f"unsupported request field(s) {', '.join(present)}: the ECG-R1 shim cannot honour them")
    temperature = payload.get("temperature")
    temperature = ECGR1_TEMPERATURE if temperature is None else temperature
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise ValueError(f"temperature {temperature!r}: expected a number in [0, 2] (ECG-R1 is run at 0)")
    max_tokens = payload.get("max_completion_tokens", payload.get("max_tokens"))
    max_tokens = ECGR1_MAX_TOKENS if max_tokens is None else max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= max_tokens_limit:
        raise ValueError(f"max_tokens {max_tokens!r}: expected an integer in [1, {max_tokens_limit}]")
    model = payload.get("model")
    if model is not None and not isinstance(model, str):
        raise ValueError("model must be a string")

    system: list[str] = []
    users: list[Any] = []
    for msg in payload["messages"]:
        role = msg.get("role") if isinstance(msg, dict) else None
        if role == "system":
            system.append(_text_of(msg.get("content"), "system"))
        elif role == "user":
            users.append(msg.get("content"))
        else:
            raise ValueError(f"message role {role!r}: ECG-R1 is served one system and one user message")
    if len(system) > 1 or len(users) != 1:
        raise ValueError(f"{len(system)} system and {len(users)} user messages: expected at most 1 and exactly 1")
    content = users[0]
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(parts, list):
        raise ValueError("user message content must be a string or a list of content parts")
    before: list[str] = []
    after: list[str] = []
    ecgs: list[np.ndarray] = []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise ValueError("text content part has no 'text' string")
            if ECG_MARKER in text:
                raise ValueError(f"text contains the literal marker {ECG_MARKER}; send the ECG as an 'ecg' part")
            (after if ecgs else before).append(text)
        elif kind == "ecg":
            ecgs.append(decode_ecg_part(part))
        else:
            raise ValueError(f"unsupported content part type {kind!r} (accepted: text, ecg)")
    if len(ecgs) != 1:
        raise ValueError(f"{len(ecgs)} ECG parts in the request; ECG-R1 takes exactly one")
    return ChatRequest(ecg=ecgs[0], prompt="\n".join(before) + ECG_MARKER + "\n".join(after),
                       system_prompt=system[0] if system else None, model=model, max_tokens=max_tokens,
                       temperature=float(temperature))


def build_chat_response(text: str, *, request_id: str, model: str, created: int, completion_tokens: int,
                        finish_reason: str | None, prompt_tokens: int | None = None,
                        reasoning_content: str | None = None, extra: dict[str, Any] | None = None
                        ) -> dict[str, Any]:
    """Server side of `read_chat_response`: a standard chat.completion (one choice)."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if reasoning_content is not None:
        message["reasoning_content"] = reasoning_content
    prompt = int(prompt_tokens or 0)
    return {
        "id": request_id, "object": "chat.completion", "created": int(created), "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": int(completion_tokens),
                  "total_tokens": prompt + int(completion_tokens)},
        **(extra or {}),
    }


def error_body(message: str, *, status: int, kind: str | None = None, param: str | None = None) -> dict[str, Any]:
    """Server side of `error_message`: the OpenAI error object."""
    kind = kind or ("invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


def read_chat_response(body: bytes) -> tuple[str, str, int | None, str | None]:
    """(text, model, completion tokens, finish_reason) from a chat.completion body; ReasonerUnavailable if unusable."""
    try:
        data = json.loads(body)
        choice = data["choices"][0]
        message = choice["message"]
        content = message.get("content") or ""
        thinking = message.get("reasoning_content") or message.get("reasoning")
        model = str(data.get("model") or "unknown")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ReasonerUnavailable(f"response is not a chat completion ({type(exc).__name__}: {exc})",
                                  "bad-response") from None
    if not isinstance(content, str):
        raise ReasonerUnavailable("response message content is not text", "bad-response")
    if thinking and "<think>" not in content:
        content = f"<think>\n{thinking}\n</think>\n{content}"
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    tokens = usage.get("completion_tokens")
    return content, model, int(tokens) if isinstance(tokens, (int, float)) else None, choice.get("finish_reason")


def error_message(body: bytes, limit: int = 300) -> str:
    """The server's own words for an error (OpenAI `{"error": {"message"}}` or the raw body), shortened."""
    try:
        data = json.loads(body)
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = err.get("message") if isinstance(err, dict) else None
        text = str(msg if msg else err)
    except ValueError:
        text = body.decode("utf-8", "replace")
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")
