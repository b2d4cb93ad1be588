"""The `ensemble` command line."""

import argparse
from typing import Any


def add_if_missing(parser: argparse.ArgumentParser, flag: str, **kwargs: Any) -> None:
    """Add `flag` unless a parent parser already gave it (then the parent's is the one)."""
    try:
        parser.add_argument(flag, **kwargs)
    except argparse.ArgumentError:
        pass
