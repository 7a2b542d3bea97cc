"""How the training settings read a config: one typed getter for a scalar key, described once as a `Key`
(dotted name, type, default, lower bound), and the checks every section shares."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

from ..config import ConfigError, get_dotted

Number = Union[bool, int, float]


@dataclass(frozen=True)
class Key:
    """A scalar config key: `kind` bool, int (no bool) or float (an int is taken too), at least `minimum`
    (0 unless given); a missing key is `default`."""

    dotted: str
    kind: type
    default: Number
    minimum: Optional[Number] = None

    @property
    def name(self) -> str:
        return self.dotted.rsplit(".", 1)[-1]

    @property
    def parent(self) -> str:
        return self.dotted.rsplit(".", 1)[0]

    def get(self, mapping: Mapping[str, Any]) -> Number:
        """The value in `mapping` (the section at `parent`), checked."""
        value = mapping.get(self.name, self.default)
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{self.dotted} must be true or false, got {value!r}")
            return value
        minimum = self.kind(0) if self.minimum is None else self.minimum
        if self.kind is int:
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"{self.dotted} must be an integer >= {minimum}, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise ConfigError(f"{self.dotted} must be a number >= {minimum}, got {value!r}")
        return float(value)

    def find(self, raw: Mapping[str, Any]) -> Number:
        """The value in the whole config: its section must be a mapping, or absent."""
        return self.get(section(raw, self.parent))


def read_keys(mapping: Mapping[str, Any], keys: Mapping[str, Key]) -> dict:
    """{field: value} for a table of {field: Key} under one section."""
    return {name: key.get(mapping) for name, key in keys.items()}


def section(raw: Mapping, dotted: str) -> Mapping[str, Any]:
    node = get_dotted(raw, dotted)
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        raise ConfigError(f"{dotted} must be a mapping, got {node!r}")
    return node


def check_known(mapping: Mapping, dotted: str, known: Sequence[str]) -> None:
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise ConfigError(f"{dotted}.{unknown[0]} is not supported by rare train (known: {', '.join(sorted(known))})")
