"""Typed exceptions of chunked_medoids.

Every error raised on bad user input is one of these.  They subclass the builtin
``ValueError`` / ``TypeError`` / ``LookupError`` / ``OSError`` so callers can catch either
the precise class or the broad builtin one.  Messages name the parameter (or file), the
rule, the value received and, where possible, the fix.
"""

from __future__ import annotations


class ChunkedMedoidsError(Exception):
    """Base class of every error raised by chunked_medoids."""


class InvalidParameterError(ChunkedMedoidsError, ValueError):
    """A parameter has an invalid value (wrong range, wrong length, duplicates, ...)."""


class InvalidTypeError(ChunkedMedoidsError, TypeError):
    """A parameter has an unsupported type."""


class UnknownNameError(ChunkedMedoidsError, LookupError, ValueError):
    """A name (metric, method, init, source kind, dataset) is not registered."""

    def __str__(self) -> str:  # LookupError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class DissimilarityError(ChunkedMedoidsError, ValueError):
    """The dissimilarity data violates the contract (NaN, negative, asymmetric, ...)."""


class UnsupportedDtypeError(ChunkedMedoidsError, TypeError):
    """The dissimilarity or feature array has a dtype that is not supported."""


class IncompleteStoreError(DissimilarityError):
    """A chunked store was opened for clustering but not every stripe has been written."""


class StoreCorruptionError(ChunkedMedoidsError, OSError):
    """A chunk of a store is missing or cannot be decoded."""


class StoreExistsError(ChunkedMedoidsError, FileExistsError):
    """The output store already exists and ``overwrite=False``."""


class StoreLockedError(ChunkedMedoidsError, OSError):
    """Another process holds the build claim of this store."""


class CheckpointMismatchError(ChunkedMedoidsError, ValueError):
    """A checkpoint belongs to another matrix or other parameters."""


class CheckpointFormatError(CheckpointMismatchError):
    """A checkpoint was written in another format version (by another chunked_medoids)."""


class SchedulerLostError(ChunkedMedoidsError, ConnectionError):
    """The distributed scheduler went away (or the client lost it) during a pass.

    A ``ConnectionError`` (hence ``OSError``).  The pass's results are lost; a run given
    ``checkpoint=`` resumes from its last saved state when rerun with the same checkpoint.
    """


class MissingFileError(ChunkedMedoidsError, FileNotFoundError):
    """An input file, store, directory or scheduler file does not exist."""


class ReadOnlyLocationError(ChunkedMedoidsError, PermissionError):
    """An output store, checkpoint or directory cannot be written."""


class CheckpointCorruptError(CheckpointMismatchError):
    """A checkpoint file is damaged, not a checkpoint, or holds values no run can have
    written (an array of the wrong shape, dtype or range; caches that disagree with the
    data).  The message names the file and the field; delete the file to start over."""


class QuantisationOverflowError(ChunkedMedoidsError, OverflowError):
    """A distance does not fit the 2-byte storage type (float16) with the chosen scale.

    The message names the value, the scale and the fix (a smaller ``scale=`` or a 4-byte
    dtype)."""


class OutputOverlapsInputError(InvalidParameterError):
    """The output of a build (or a rechunk) is, contains or lies inside its input.

    Refused with or without ``overwrite=True``: writing (or deleting to overwrite) the
    output would destroy the data being read.  Two datasets of one HDF5 file are fine
    when neither contains the other."""
