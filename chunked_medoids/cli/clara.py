"""``chunked-medoids clara``: CLARA-family clustering on samples, scored on the full data."""

from __future__ import annotations

from ._common import checkpoint_given
from .fit import run_clustering, sampling_features


def run(args) -> int:
    from ..algorithms.clara import clara

    given = {
        "variant": (args.variant, "--variant"),
        "n_samples": (args.n_samples, "--n-samples"),
        "sample_size": (args.sample_size, "--sample-size"),
        "random_state": (args.seed, "--seed"),
        "memory_limit": (args.memory_limit, "--memory-limit"),
        **checkpoint_given(args),
    }
    return run_clustering(args, command="clara", method_name="clara", func=clara,
                          given=given, source_factory=sampling_features)
