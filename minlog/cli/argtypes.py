"""The value types of the ``minlog`` command's options (argparse ``type=``): a value of
the wrong form is bad usage (exit status 2) with a message naming the rule."""

from __future__ import annotations

import argparse
import math

__all__ = ["days", "port", "positive_seconds", "seconds"]


def days(text: str) -> int:
    """A positive number of days."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number of days") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1 (today)")
    return value


def seconds(text: str) -> float:
    """A finite number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError("must be a finite number of seconds, 0 or more")
    return value


def positive_seconds(text: str) -> float:
    """A finite number of seconds, more than 0."""
    value = seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def port(text: str) -> int:
    """A TCP port, 0 (a free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a port number from 0 to 65535")
    return value
