"""Every error a user can see: `MosaicdbError` and its subclasses.

Library code raises these with a message a person can act on; `cli/app.py` turns them into one
line on stderr and exit code 1, in one place.
"""

from __future__ import annotations


class MosaicdbError(Exception):
    """Base class: the message is shown to the user as is."""


class StoreError(MosaicdbError):
    """The store (catalog / vector file) cannot be opened or is in a bad state."""


class SchemaTooNewError(StoreError):
    """The catalog was written by a newer mosaicdb."""


class OptionError(MosaicdbError):
    """An option has a value we cannot use; the message names the option."""

    def __init__(self, option: str, message: str):
        self.option = option
        super().__init__(f"{option}: {message}")


class ImageError(MosaicdbError):
    """An image (target, thumbnail) cannot be read or written."""


class RenderError(MosaicdbError):
    """A render cannot be done as asked."""


class NotFoundError(MosaicdbError):
    """A render, root or photo that was asked for does not exist."""


# what to do about a catalog file SQLite finds damaged: no command of ours can mend it
DAMAGED_ADVICE = "restore it from a backup, or index the photo folders into a new store (--home)"


def with_damage_advice(error: BaseException) -> str:
    """The driver's words, and what to do when SQLite says the catalog file is damaged."""
    import sqlite3

    damaged = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
    if isinstance(error, sqlite3.DatabaseError) and error.sqlite_errorname in damaged:
        return f"{error} ({DAMAGED_ADVICE})"
    return str(error)


def broken_thumbnail(photo_id: int) -> str:
    """What to do about a stored thumbnail that does not decode (its JPEG markers can be
    intact, so only `check --deep` finds it)."""
    return (
        f"the stored thumbnail of photo {photo_id} does not decode: run "
        "`mosaicdb check --deep --repair`, then `mosaicdb index --retry-errors`"
    )
