"""Errors a user can hit: one class tree, each with a one-line message that names the problem."""

from __future__ import annotations


class BuduError(Exception):
    """Base of every error budu reports to a user (never shown as a traceback)."""

    exit_code = 1


class ConfigError(BuduError):
    """A config.json (or flag) value is missing or invalid; the message names the field."""


class NotFound(BuduError):
    """A container, image or other object does not exist."""


class StateError(BuduError):
    """The object exists but is in the wrong state for the operation."""


class KernelError(BuduError):
    """The kernel refused an operation; the message says which and why."""
