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


def _plural(kind: str) -> str:
    return kind[:-1] + "ies" if kind.endswith("y") else kind + "s"


class UnknownChoiceError(UserInputError):
    """A name (source, dataset, property, scheme...) is not one of the valid choices."""

    def __init__(self, kind: str, name: str, valid: Iterable[str], where: str = "") -> None:
        self.kind, self.name, self.valid, self.where = kind, name, sorted(valid), where
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}unknown {kind} {name!r}; valid {_plural(kind)}: {_choices(self.valid)}")

    def __reduce__(self) -> tuple:
        # Ray pickles a trial's exception and copies it to re-raise it: rebuild from the constructor's arguments
        return type(self), (self.kind, self.name, self.valid, self.where)


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


class WandbPublishError(UserInputError):
    """A W&B report cannot be published: no API key is configured, or the project has no runs on the server yet."""


class PretrainedFileError(UserInputError):
    """A pre-trained model (store key, exported entry or checkpoint) is missing, ambiguous or not loadable."""


class PretrainWaitError(TlsearchError):
    """A trial waited longer than ``TLSEARCH_PT_WAIT_S`` for a PT model another process (or node) is training;
    the message names the holder."""


class StorageError(UserInputError):
    """An object-store location cannot be read or written (no such bucket, credentials, endpoint)."""
