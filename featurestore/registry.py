"""One registry shape for datasets, backbones, classifiers, extraction runtimes and readers:
adding one is one entry, and what an entry can do is said by the entry, not by checks of its name
elsewhere; an unknown name is refused by ``Registry.get`` in one message listing the known ones."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from featurestore.errors import InvalidName

Entry = TypeVar("Entry")


def alternatives(words: Iterable[str]) -> str:
    """``words`` as a choice for a message or a help string: "a, b or c"."""
    words = list(words)
    return f"{', '.join(words[:-1])} or {words[-1]}" if len(words) > 1 else "".join(words)


class Registry(Generic[Entry]):
    """Named entries of one kind, in registration order.

    ``kind`` names the entries in messages ("dataset"); ``hint`` ends the unknown-name error
    (e.g. how to bring your own); ``error`` is the ``InvalidName`` subclass to raise;
    ``populate`` imports the modules that register the built-in entries, on first use.
    """

    def __init__(self, kind: str, *, error: type[InvalidName] = InvalidName, hint: str = "",
                 populate: Callable[[], object] | None = None):
        self.kind = kind
        self._error = error
        self._hint = hint
        self._populate = populate
        self._entries: dict[str, Entry] = {}

    def _ready(self) -> dict[str, Entry]:
        if self._populate is not None:
            populate, self._populate = self._populate, None
            populate()
        return self._entries

    def register(self, name: str, entry: Entry, *, replace: bool = False) -> Entry:
        """Add ``entry`` under ``name``; a name is registered once unless ``replace``."""
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> Entry:
        """The entry called ``name``, or ``InvalidName`` listing the known names."""
        entries = self._ready()
        try:
            return entries[name]
        except (KeyError, TypeError):
            known = ", ".join(sorted(entries))
            raise self._error(f"unknown {self.kind} {name!r}: choose one of {known}{self._hint}") from None

    def names(self) -> list[str]:
        """Every registered name, in registration order."""
        return list(self._ready())

    def items(self) -> list[tuple[str, Entry]]:
        """Every ``(name, entry)``, in registration order."""
        return list(self._ready().items())

    def __contains__(self, name: object) -> bool:
        return name in self._ready()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._ready())
