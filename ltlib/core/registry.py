"""Named choices (data sets, models, losses, schedules, ...) that can list themselves.

An unknown name raises a :class:`~ltlib.core.errors.ConfigError` that lists the valid names with
their one-line descriptions, so a typo in a notebook parameter is fixed in one look.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

from .errors import ConfigError


T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    value: T
    description: str
    info: Mapping[str, Any] = field(default_factory=dict)   # what the rest of the library reads (a step's passes)


class Registry(Generic[T]):
    """A name -> value map for one kind of choice (e.g. ``"model"``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, value: T, description: str, **info: Any) -> T:
        """Register ``value`` as ``name``; ``info`` holds what other layers need to know about it (for a step
        strategy: ``passes``, its cost in plain steps)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, value, description, dict(info))
        return value

    def register(self, name: str, description: str, **info: Any) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda value: self.add(name, value, description, **info)

    def get(self, name: str) -> T:
        return self.entry(name).value

    def entry(self, name: str) -> Entry[T]:
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}. Valid {self.kind}s:\n{self.describe()}")
        return self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def describe(self) -> str:
        width = max((len(n) for n in self._entries), default=0)
        return "\n".join(f"  {e.name:<{width}}  {e.description}" for e in self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
