"""`python -m shared`: the operator command line (see `shared.cli`); also installed as `callkeeper`, which is the
name to use: `python -m shared` imports whatever folder named `shared` comes first on the path, the current
folder's included."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _imported_elsewhere() -> str | None:
    """Where the package named `shared` came from, when it is not this folder (another `shared` in the current
    folder wins over the app's); None when it is this one."""
    package = sys.modules.get("shared")
    location = getattr(package, "__file__", None)
    if location is not None and os.path.dirname(os.path.abspath(location)) == _HERE:
        return None
    paths = list(getattr(package, "__path__", []))
    return str(location or (paths[0] if paths else "an unknown location"))


if __name__ == "__main__":
    other = _imported_elsewhere()
    if other is not None:
        sys.stderr.write(
            f"python -m shared: error: Python imported another package named 'shared' ({other}) instead of "
            f"callkeeper's ({_HERE}): a folder of that name in the current folder ({os.getcwd()}) or on PYTHONPATH "
            "comes first\n"
            "python -m shared: what to do: run `callkeeper` instead (in the app's .venv/bin), or run "
            "`python -m shared` from the app folder\n"
        )
        sys.exit(2)

    from shared.cli import main

    sys.exit(main())
