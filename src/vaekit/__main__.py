"""`python -m vaekit` (and `torchrun -m vaekit`) run the command-line interface."""

import sys

from vaekit.cli import main

if __name__ == "__main__":
    sys.exit(main())
