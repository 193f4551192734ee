"""``python -m chunked_medoids`` runs the command line (see :mod:`chunked_medoids.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
