"""Named choices (data sets, models, losses, schedules, ...) that can list themselves.

An unknown name raises a :class:`~ltlib.errors.ConfigError` that lists the valid names with
their one-line descriptions, so a typo in a notebook parameter is fixed in one look.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

from .errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    value: T
    description: str


class Registry(Generic[T]):
    """A name -> value map for one kind of choice (e.g. ``"model"``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, value: T, description: str) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, value, description)
        return value

    def register(self, name: str, description: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda value: self.add(name, value, description)

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
