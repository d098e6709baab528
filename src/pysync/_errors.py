"""Exceptions raised by pysync.

The tree::

    PysyncError
    ├── ValidationError            a document or value pysync cannot store as given
    ├── DocumentNotFoundError      patch/increment of a document that does not exist
    ├── DocumentExistsError        add() of an id that is already taken
    ├── MigrationError             a schema migration step failed (nothing changed)
    ├── TransactionTooLargeError   a ``transaction()`` changes more documents than one
    │                              DynamoDB transaction holds (nothing written)
    └── StoreError                 the local database failed; ``name`` and ``message``
        │                          keep the browser's DOMException name and text
        ├── QuotaExceededError     the origin's storage quota is full
        ├── ConstraintError        a unique index or key constraint was violated
        ├── DataError              an invalid key, key range or value
        ├── NotFoundError          no such object store or index
        ├── ReadOnlyError          a write in a read-only transaction
        ├── VersionError           opening with a version lower than the stored one
        ├── SchemaError            the stored schema does not match the declared one
        ├── BlockedError           another connection blocks a version upgrade
        ├── DatabaseClosedError    the connection was closed (or upgraded elsewhere)
        ├── TransactionInactiveError  a request on a finished transaction, or an
        │                          ``await`` inside a transaction body
        └── TransactionAbortedError   the transaction was aborted
"""

from __future__ import annotations


class PysyncError(Exception):
    """Base class of every error pysync raises on purpose."""


class ValidationError(PysyncError, ValueError):
    """A document or value that pysync cannot store as given."""


class StoreError(PysyncError):
    """The local database failed.

    ``name`` is the DOMException name reported by the browser (``"ConstraintError"``,
    ``"QuotaExceededError"``, ...) and ``message`` its text, so nothing the browser
    said is lost in translation.
    """

    default_name = "UnknownError"

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name or self.default_name
        self.message = message

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"


class QuotaExceededError(StoreError):
    """The browser refused a write because the origin's storage quota is full."""

    default_name = "QuotaExceededError"


class ConstraintError(StoreError):
    """A write violated a unique index or an existing key."""

    default_name = "ConstraintError"


class DataError(StoreError):
    """An invalid key, key range or value for the local database."""

    default_name = "DataError"


class NotFoundError(StoreError):
    """The transaction names an object store or index that does not exist."""

    default_name = "NotFoundError"


class ReadOnlyError(StoreError):
    """A write was issued in a read-only transaction."""

    default_name = "ReadOnlyError"


class VersionError(StoreError):
    """The database was opened with a version lower than the stored one."""

    default_name = "VersionError"


class SchemaError(StoreError):
    """The stored schema differs from the declared one, or an upgrade cannot apply."""

    default_name = "SchemaError"


class BlockedError(StoreError):
    """A version upgrade is blocked by another open connection (another tab)."""

    default_name = "BlockedError"


class DatabaseClosedError(StoreError):
    """The connection is closed, for example because another tab upgraded the schema."""

    default_name = "InvalidStateError"


class TransactionInactiveError(StoreError):
    """A request was made on a transaction that has already finished.

    In a browser an IndexedDB transaction commits as soon as control returns to the
    event loop with no request pending, so an ``await`` inside a transaction body
    would end it early. pysync refuses such bodies instead of committing half of them.
    """

    default_name = "TransactionInactiveError"


class TransactionAbortedError(StoreError):
    """The transaction was aborted and none of its writes were committed."""

    default_name = "AbortError"


_BY_NAME: dict[str, type[StoreError]] = {
    cls.default_name: cls
    for cls in (
        QuotaExceededError,
        ConstraintError,
        DataError,
        NotFoundError,
        ReadOnlyError,
        VersionError,
        TransactionInactiveError,
        TransactionAbortedError,
        DatabaseClosedError,
    )
}


def store_error(name: str, message: str) -> StoreError:
    """Translate a DOMException ``name`` and ``message`` into the matching pysync error."""
    cls = _BY_NAME.get(name, StoreError)
    # Chromium's QuotaExceededError has an empty message: say what it means instead.
    return cls(message or (cls.__doc__ or name).splitlines()[0], name)


class DocumentNotFoundError(PysyncError, KeyError):
    """A patch or increment names a document that does not exist locally."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "document not found"


class DocumentExistsError(PysyncError):
    """``add`` was given the id of a document that already exists."""


class MigrationError(PysyncError):
    """A schema migration step failed; nothing was changed."""


class TransactionTooLargeError(PysyncError):
    """A ``transaction()`` changes more documents than it could ever push; nothing was written.

    A transaction is pushed as one DynamoDB ``TransactWriteItems``, which takes at
    most ``limit`` (100) items: one per document changed. ``documents`` is how many
    documents this one changed (several writes to one document count once).
    """

    def __init__(self, documents: int, limit: int) -> None:
        super().__init__(
            f"this transaction changes {documents} documents, but a transaction is pushed "
            f"as one DynamoDB TransactWriteItems, which takes at most {limit}: nothing was "
            f"written. Split it into transactions of at most {limit} documents, or write "
            "documents that need not change together outside transaction()."
        )
        self.documents = documents
        self.limit = limit

    def __reduce__(self) -> tuple[type[TransactionTooLargeError], tuple[int, int]]:
        return type(self), (self.documents, self.limit)
