"""chunked_medoids: exact k-medoids for dissimilarity matrices larger than memory."""

from ._errors import (
    CheckpointCorruptError,
    CheckpointFormatError,
    CheckpointMismatchError,
    ChunkedMedoidsError,
    DissimilarityError,
    IncompleteStoreError,
    InvalidParameterError,
    InvalidTypeError,
    MissingFileError,
    OutputOverlapsInputError,
    QuantisationOverflowError,
    ReadOnlyLocationError,
    SchedulerLostError,
    StoreCorruptionError,
    StoreExistsError,
    StoreLockedError,
    UnknownNameError,
    UnsupportedDtypeError,
)
from ._result import ClaraResult, DynMSCResult, MedoidsResult
from ._version import __version__
from .engine import Engine
from .sources import DissimilaritySource, open_dissimilarity

# Public names provided by submodules, imported lazily on first access so that
# ``import chunked_medoids`` stays cheap (CLI start-up) and each layer loads only when used.
_LAZY = {
    # sources / metrics / builder
    "from_features": "chunked_medoids.sources.features",
    "validate_source": "chunked_medoids.sources.validate",
    "METRICS": "chunked_medoids.metrics",
    "resolve_metric": "chunked_medoids.metrics",
    "build_dissimilarity": "chunked_medoids.builder",
    "store_info": "chunked_medoids.builder",
    # exact algorithms (issue: PAM family)
    "pam": "chunked_medoids.algorithms.pam",
    "fastpam1": "chunked_medoids.algorithms.pam",
    "fastpam2": "chunked_medoids.algorithms.pam",
    "fastpam": "chunked_medoids.algorithms.pam",
    "fasterpam": "chunked_medoids.algorithms.fasterpam",
    "alternating": "chunked_medoids.algorithms.alternating",
    "build": "chunked_medoids.algorithms.init",
    "lab": "chunked_medoids.algorithms.init",
    "METHODS": "chunked_medoids.algorithms",
    "INITS": "chunked_medoids.algorithms",
    # sampling
    "clara": "chunked_medoids.algorithms.clara",
    "largeclara": "chunked_medoids.algorithms.clara_large",
    "clarans": "chunked_medoids.algorithms.clarans",
    "fastclarans": "chunked_medoids.algorithms.clarans",
    # silhouettes and k
    "silhouette": "chunked_medoids.algorithms.silhouette",
    "medoid_silhouette": "chunked_medoids.algorithms.silhouette",
    "dynmsc": "chunked_medoids.algorithms.msc",
    "fastermsc": "chunked_medoids.algorithms.msc",
    # estimators
    "KMedoids": "chunked_medoids.estimator",
    "CLARA": "chunked_medoids.estimator",
}


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'chunked_medoids' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod), name)
    if name in ("METHODS", "INITS"):
        from .algorithms import _load_all

        _load_all()
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ChunkedMedoidsError",
    "CheckpointCorruptError",
    "CheckpointFormatError",
    "CheckpointMismatchError",
    "ClaraResult",
    "DynMSCResult",
    "DissimilarityError",
    "DissimilaritySource",
    "Engine",
    "IncompleteStoreError",
    "InvalidParameterError",
    "InvalidTypeError",
    "MedoidsResult",
    "MissingFileError",
    "QuantisationOverflowError",
    "OutputOverlapsInputError",
    "ReadOnlyLocationError",
    "SchedulerLostError",
    "StoreCorruptionError",
    "StoreExistsError",
    "StoreLockedError",
    "UnknownNameError",
    "UnsupportedDtypeError",
    "__version__",
    "open_dissimilarity",
    *_LAZY,
]
