"""Which peak expressions can be computed from raw samples, recognised conservatively.

A peak read at grid steps misses a sample between two steps, so the agent reads every raw sample
whenever it can rebuild the expression's value at each sample instant itself. That is possible
for a bare selector (one series), ``sum(selector)`` and ``sum by (labels) (selector)``: each is
the held value of its series, or their sum. Anything else (a function, a binary operator,
``offset``, ``@``, ``without``, a range, a quoted name) is not recognised and is left to the grid,
since a wrongly rebuilt expression would bill the wrong amount. Label matchers are not
interpreted: the selector's text is passed to Prometheus as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MATCH_OPERATORS = ("=~", "!~", "!=", "=")
_PUNCTUATION = "(){},"
# A metric called like a keyword would be parsed differently by Prometheus; leave it to the grid.
_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"offset", "bool", "atan2", "inf", "nan", "sum", "avg", "count", "min", "max", "group"}
    | {"stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "limitk", "limit_ratio"}
)


@dataclass(frozen=True)
class Decomposed:
    """A peak expression rebuilt from the raw samples of ``selector``.

    Not ``summed``: the selector itself, which must yield one series. Summed: the sum of its
    series, per group of the ``by`` labels (one group when there are none).
    """

    selector: str
    summed: bool
    by: tuple[str, ...] = ()

    def group_of(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        """The output series a raw series adds to; a missing label groups as empty, as in PromQL."""
        if not self.summed:
            return tuple(f"{k}={v}" for k, v in sorted(labels.items()))
        return tuple(labels.get(label, "") for label in self.by)


@dataclass(frozen=True)
class NotDecomposable:
    """An expression evaluated by Prometheus on a grid; ``reason`` says what was not recognised."""

    reason: str


class _Unrecognised(Exception):
    pass


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "string", or the punctuation or operator itself
    text: str
    start: int
    end: int


def _string_end(text: str, start: int) -> int:
    quote = text[start]
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == "\\" and quote != "`":
            position += 2
            continue
        if char == quote:
            return position + 1
        position += 1
    raise _Unrecognised("an unterminated string")


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char.isspace():
            position += 1
            continue
        if char in "\"'`":
            end = _string_end(text, position)
            tokens.append(_Token("string", text[position:end], position, end))
            position = end
            continue
        if char in _PUNCTUATION:
            tokens.append(_Token(char, char, position, position + 1))
            position += 1
            continue
        operator = next((op for op in _MATCH_OPERATORS if text.startswith(op, position)), None)
        if operator is not None:
            end = position + len(operator)
            tokens.append(_Token(operator, operator, position, end))
            position = end
            continue
        name = _NAME.match(text, position)
        if name is None:
            raise _Unrecognised(f"{char!r} at offset {position}")
        tokens.append(_Token("name", name.group(), position, name.end()))
        position = name.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self._text = text
        self._tokens = _tokens(text)
        self._position = 0

    def _peek(self) -> _Token | None:
        return self._tokens[self._position] if self._position < len(self._tokens) else None

    def _take(self, kind: str) -> _Token:
        token = self._peek()
        if token is None or token.kind != kind:
            found = "the end" if token is None else repr(token.text)
            raise _Unrecognised(f"expected {kind!r}, found {found}")
        self._position += 1
        return token

    def _at(self, kind: str) -> bool:
        token = self._peek()
        return token is not None and token.kind == kind

    def _is_word(self, word: str) -> bool:
        token = self._peek()
        return token is not None and token.kind == "name" and token.text.lower() == word

    def expression(self) -> Decomposed:
        result = self._sum() if self._is_word("sum") else Decomposed(self._selector(), False)
        rest = self._peek()
        if rest is not None:
            raise _Unrecognised(repr(self._text[rest.start :]))
        return result

    def _sum(self) -> Decomposed:
        self._take("name")
        by = self._grouping() if self._is_word("by") else None
        self._take("(")
        selector = self._selector()
        self._take(")")
        if self._is_word("by"):
            if by is not None:
                raise _Unrecognised("two by clauses")
            by = self._grouping()
        return Decomposed(selector, summed=True, by=by or ())

    def _grouping(self) -> tuple[str, ...]:
        self._take("name")
        self._take("(")
        labels: list[str] = []
        while self._at("name"):
            labels.append(self._label())
            if not self._at(","):
                break
            self._take(",")
        self._take(")")
        return tuple(labels)

    def _label(self) -> str:
        label = self._take("name").text
        if not _LABEL.fullmatch(label):
            raise _Unrecognised(f"label name {label!r}")
        return label

    def _selector(self) -> str:
        first = self._peek()
        if first is None:
            raise _Unrecognised("no selector")
        if first.kind == "name":
            if first.text.lower() in _KEYWORDS:
                raise _Unrecognised(f"{first.text!r} is a PromQL keyword")
            self._position += 1
            following = self._peek()
            if following is None or following.kind != "{":
                return first.text
        last = self._matchers()
        return self._text[first.start : last.end]

    def _matchers(self) -> _Token:
        self._take("{")
        while self._at("name"):
            label = self._label()
            token = self._peek()
            if token is None or token.kind not in _MATCH_OPERATORS:
                raise _Unrecognised(f"no matcher operator after {label!r}")
            self._position += 1
            self._take("string")
            if not self._at(","):
                break
            self._take(",")
        return self._take("}")


def decompose(expression: str) -> Decomposed | NotDecomposable:
    """A selector, ``sum(selector)`` or ``sum by (labels) (selector)``; anything else is not."""
    try:
        return _Parser(expression.strip()).expression()
    except _Unrecognised as exc:
        return NotDecomposable(
            "only a selector, sum(selector) or sum by (labels) (selector) is read from raw "
            f"samples; not recognised: {exc}"
        )
