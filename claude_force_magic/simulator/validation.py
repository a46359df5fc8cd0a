"""Validation of request bodies, with messages that name the offending field.

Unknown top-level keys are refused (``"<key>: Extra inputs are not permitted"``), as the real
API does; the keys that anthropic 2.14 sends for ``messages.create`` and
``messages.count_tokens`` are accepted, and those the simulator does not model (tools,
thinking, ...) are ignored. ``temperature``, ``top_p`` and ``top_k`` are refused with a
message saying they are no longer supported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["InvalidRequest", "MessageRequest", "parse_count_tokens", "parse_create"]

_COMMON_KEYS = frozenset(
    {
        "model",
        "messages",
        "system",
        "cache_control",
        "output_config",
        "speed",
        "thinking",
        "tool_choice",
        "tools",
    }
)
CREATE_KEYS = _COMMON_KEYS | {
    "max_tokens",
    "container",
    "diagnostics",
    "inference_geo",
    "metadata",
    "service_tier",
    "stop_sequences",
    "stream",
}
COUNT_TOKENS_KEYS = _COMMON_KEYS
REMOVED_SAMPLING_KEYS = ("temperature", "top_p", "top_k")


class InvalidRequest(ValueError):
    """A request body the API would answer with 400 ``invalid_request_error``."""


@dataclass(frozen=True)
class MessageRequest:
    """The parts of a valid ``POST /v1/messages`` body the simulator uses."""

    model: str
    max_tokens: int
    messages: list[Any]
    system: str | list[Any] | None
    stream: bool
    stop_sequences: tuple[str, ...]


def _check_keys(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for key in REMOVED_SAMPLING_KEYS:
        if key in body:
            raise InvalidRequest(
                f"{key}: this parameter is no longer supported by the Messages API; remove it"
            )
    for key in body:
        if key not in allowed:
            raise InvalidRequest(f"{key}: Extra inputs are not permitted")


def _check_model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise InvalidRequest("model: Field required")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: must be a non-empty string")
    return model


def _check_block(block: Any, where: str) -> None:
    if not isinstance(block, dict):
        raise InvalidRequest(f"{where}: content blocks must be objects")
    kind = block.get("type")
    if not isinstance(kind, str):
        raise InvalidRequest(f"{where}.type: Field required")
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise InvalidRequest(f"{where}.text: must be a string")
        if not block["text"]:
            raise InvalidRequest(f"{where}.text: text content blocks must be non-empty")


def _check_system(body: Mapping[str, Any]) -> str | list[Any] | None:
    system = body.get("system")
    if system is None or isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise InvalidRequest("system: must be a string or a list of text blocks")
    for i, block in enumerate(system):
        _check_block(block, f"system.{i}")
        if block["type"] != "text":
            raise InvalidRequest(f"system.{i}.type: only text blocks are allowed in system")
    return system


def _check_messages(body: Mapping[str, Any]) -> list[Any]:
    if "messages" not in body:
        raise InvalidRequest("messages: Field required")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise InvalidRequest("messages: must be a list")
    if not messages:
        raise InvalidRequest("messages: at least one message is required")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages.{i}: must be an object with role and content")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise InvalidRequest(f"messages.{i}.role: must be 'user' or 'assistant', got {role!r}")
        if "content" not in message:
            raise InvalidRequest(f"messages.{i}.content: Field required")
        content = message["content"]
        if isinstance(content, list):
            for j, block in enumerate(content):
                _check_block(block, f"messages.{i}.content.{j}")
        elif not isinstance(content, str):
            raise InvalidRequest(f"messages.{i}.content: must be a string or a list of blocks")
        elif not content and (role == "user" or i < len(messages) - 1):
            raise InvalidRequest(
                f"messages.{i}.content: all messages must have non-empty content except for "
                "the optional final assistant message"
            )
    if messages[0]["role"] != "user":
        raise InvalidRequest("messages.0.role: the first message must use the 'user' role")
    return messages


def _check_object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def parse_create(raw: Any) -> MessageRequest:
    """Validate a ``POST /v1/messages`` body. Raises :class:`InvalidRequest` naming the field."""
    body = _check_object(raw)
    _check_keys(body, CREATE_KEYS)
    model = _check_model(body)
    if "max_tokens" not in body:
        raise InvalidRequest("max_tokens: Field required")
    max_tokens = body["max_tokens"]
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequest(f"max_tokens: must be a positive integer, got {max_tokens!r}")
    messages = _check_messages(body)
    system = _check_system(body)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: must be a boolean")
    stops = body.get("stop_sequences", [])
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise InvalidRequest("stop_sequences: must be a list of non-empty strings")
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise InvalidRequest("metadata: must be an object")
    for key in metadata:
        if key != "user_id":
            raise InvalidRequest(f"metadata.{key}: Extra inputs are not permitted")
    user_id = metadata.get("user_id")
    if user_id is not None and not isinstance(user_id, str):
        raise InvalidRequest("metadata.user_id: must be a string")
    return MessageRequest(model, max_tokens, messages, system, stream, tuple(stops))


def parse_count_tokens(raw: Any) -> tuple[str | list[Any] | None, list[Any]]:
    """Validate a ``POST /v1/messages/count_tokens`` body; return ``(system, messages)``."""
    body = _check_object(raw)
    _check_keys(body, COUNT_TOKENS_KEYS)
    _check_model(body)
    return _check_system(body), _check_messages(body)
