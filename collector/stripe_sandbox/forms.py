"""Stripe's bracket-notation form encoding, decoded into nested dicts and lists.

The SDK writes ``items[0][price]=p``, ``payload[value]=5`` and ``expand[0]=tiers``; older clients
write ``expand[]=tiers``. Both end up as plain Python structures a handler can read.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


class FormError(ValueError):
    """A key that is not valid bracket notation."""


def decode(raw: str) -> dict[str, Any]:
    """Decode an urlencoded body or query string into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        _assign(root, key, value)
    decoded: dict[str, Any] = _listify(root)
    return decoded


def _assign(root: dict[str, Any], key: str, value: str) -> None:
    match = _KEY.match(key)
    if match is None:
        raise FormError(key)
    parts = [match.group(1), *_PART.findall(match.group(2))]
    node: dict[str, Any] = root
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "":
            # "a[]" appends: give each occurrence its own numeric slot
            part = str(len(node))
        if last:
            node[part] = value
            return
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {key: _listify(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


def expand_list(params: dict[str, Any]) -> list[str]:
    """The ``expand`` parameter as a list of paths, whatever way it was written."""
    raw = params.get("expand")
    if raw is None:
        return []
    if isinstance(raw, list):
        return [str(item) for item in raw]
    if isinstance(raw, dict):
        return [str(item) for item in raw.values()]
    return [str(raw)]
