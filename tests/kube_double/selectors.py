"""Label selectors as the API server parses the ``labelSelector`` query parameter.

The grammar of Kubernetes' ``labels.Parse``: requirements separated by commas, each one of

* ``key=value``, ``key==value``: the label is there with that value;
* ``key!=value``: the label is absent or has another value;
* ``key in (a, b)``: the label is there with one of the values;
* ``key notin (a, b)``: the label is absent or has none of the values;
* ``key``: the label is there; ``!key``: it is not.

A value may be empty (``tier=``), a set may not. What does not parse is refused the way the
API server refuses it: a 400 whose message starts with "unable to parse requirement".
(The numeric ``>``/``<`` operators, which only node affinity uses in practice, are not
served.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

TOKEN = re.compile(r"\s*(?:(?P<symbol>!=|==|=|!|\(|\)|,)|(?P<word>[A-Za-z0-9._/-]+))")
SYMBOLS = frozenset({"!=", "==", "=", "!", "(", ")", ","})


class SelectorError(ValueError):
    """A selector the API server would refuse; the message is the one it gives."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists" or "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator in ("=", "in"):
            return present and labels[self.key] in self.values
        if self.operator in ("!=", "notin"):
            return not present or labels[self.key] not in self.values
        if self.operator == "exists":
            return present
        return not present


def tokens(text: str) -> list[str]:
    found = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = TOKEN.match(text, position)
        if match is None:
            raise SelectorError(
                f"unable to parse requirement: invalid character at {text[position:]!r}"
            )
        found.append(match["symbol"] or match["word"])
        position = match.end()
    return found


def parse(text: str) -> list[Requirement]:
    """The requirements of a selector; raises SelectorError for one that does not parse."""
    words = tokens(text)
    requirements: list[Requirement] = []
    position = 0

    def peek() -> str:
        return words[position] if position < len(words) else ""

    def take(expected: str) -> str:
        nonlocal position
        found = peek()
        wanted = found not in SYMBOLS if expected == "identifier" else found == expected
        if not found or not wanted:
            raise SelectorError(
                f"unable to parse requirement: found '{found}', expected: {expected}"
            )
        position += 1
        return found

    while position < len(words):
        if peek() == "!":
            take("!")
            requirements.append(Requirement(take("identifier"), "!"))
        else:
            key = take("identifier")
            operator = peek()
            if operator in ("=", "==", "!="):
                position += 1
                value = "" if peek() in ("", ",") else take("identifier")
                requirements.append(
                    Requirement(key, "!=" if operator == "!=" else "=", frozenset({value}))
                )
            elif operator in ("in", "notin"):
                position += 1
                take("(")
                values = {take("identifier")}
                while peek() == ",":
                    take(",")
                    values.add(take("identifier"))
                take(")")
                requirements.append(Requirement(key, operator, frozenset(values)))
            elif operator in ("", ","):
                requirements.append(Requirement(key, "exists"))
            else:
                raise SelectorError(
                    f"unable to parse requirement: found '{operator}', expected: in, notin, "
                    "=, ==, !=, or end of string"
                )
        if position < len(words):
            take(",")
            if position == len(words):
                raise SelectorError("unable to parse requirement: found '', expected: identifier")
    return requirements


def matches(requirements: list[Requirement], labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy every requirement (no requirements: always)."""
    return all(requirement.matches(labels) for requirement in requirements)
