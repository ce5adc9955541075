"""Typed errors.

Every mistake a user can make (a bad reference, an unknown dataset, an empty dataset, a bad file)
raises a subclass of :class:`UserInputError`; the CLI prints its message without a traceback and
exits with code 2. Messages state the failed condition, the offending value and the valid choices.
"""

from __future__ import annotations

from collections.abc import Iterable


class TlsearchError(Exception):
    """Base class of every error tlsearch raises on purpose."""


class UserInputError(TlsearchError):
    """The user's input is wrong; the message says what and how to fix it (CLI exit code 2)."""

    exit_code = 2


def _choices(valid: Iterable[str]) -> str:
    items = sorted(valid)
    return ", ".join(items) if items else "(none)"


class UnknownChoiceError(UserInputError):
    """A name (source, dataset, property, scheme...) is not one of the valid choices."""

    def __init__(self, kind: str, name: str, valid: Iterable[str], where: str = "") -> None:
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}unknown {kind} {name!r}; valid {kind}s: {_choices(self.valid)}")


class BadReferenceError(UserInputError):
    """A dataset reference like ``source:dataset?key=value`` could not be parsed or has bad parameters."""


class EmptyDatasetError(UserInputError):
    """A dataset (or the part of it with a finite target) has no usable records."""


class DataFileError(UserInputError):
    """A data file the user pointed at is missing or malformed."""


class SourceUnavailableError(UserInputError):
    """A source could not fetch its data (no network, no package index); the message names the offline fix."""


class SampleSizeError(UserInputError):
    """A fine-tuning sample asks for more (or fewer) structures than the pool allows."""


class CorruptEntryError(TlsearchError):
    """A cache or store file failed its checksum or format check; callers rebuild it."""
