"""`python -m socialfusion VERB ...`: the same dispatcher as the `socialfusion` script (for environments where the
script is not on PATH, e.g. a venv used without activating it)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
