"""Plugins found through entry points, registered explicitly, duplicates rejected."""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class PluginError(Exception):
    """A plugin could not be found or registered; the message says why."""


class PluginRegistry(Generic[T]):
    """Named plugins of one kind (drivers, evaluators)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}

    def register(self, name: str, item: T, origin: str = "") -> None:
        """Add a plugin; a second one with the same name is an error naming both."""
        if name in self._items:
            raise PluginError(
                f"two {self.kind}s are called {name!r}: "
                f"{self._origins[name] or 'the first registered'} and "
                f"{origin or 'the second registered'}; uninstall one"
            )
        self._items[name] = item
        self._origins[name] = origin

    def get(self, name: str) -> T:
        """The plugin called ``name``."""
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none installed"
            raise PluginError(f"no {self.kind} called {name!r} (known: {known})") from None

    def names(self) -> set[str]:
        """Registered names."""
        return set(self._items)

    def load(self, group: str, eps: Iterable[EntryPoint] | None = None) -> PluginRegistry[T]:
        """Register every entry point of ``group``; returns self."""
        for ep in eps if eps is not None else entry_points(group=group):
            origin = ep.value + (f" (from {ep.dist.name})" if ep.dist is not None else "")
            self.register(ep.name, ep.load(), origin)
        return self
