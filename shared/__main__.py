"""`python -m shared`: the operator command line (see `shared.cli`); also installed as `callkeeper`."""

import sys

from shared.cli import main

if __name__ == "__main__":
    sys.exit(main())
