"""Exception types shared by the whole package.

Every error a user can cause is a :class:`BadInputError`. The CLI prints its message on one line and
exits with status 2; everything else is a bug and exits with status 1.

Example:
    >>> try:
    ...     raise BadInputError("budget '5 bananas': unknown unit 'bananas'; use e.g. 5GFLOPs")
    ... except StudentNASError as err:
    ...     print(err)
    budget '5 bananas': unknown unit 'bananas'; use e.g. 5GFLOPs
"""

from __future__ import annotations


class StudentNASError(Exception):
    """Base class of every error raised on purpose by studentnas."""


class BadInputError(StudentNASError, ValueError):
    """The user gave something we cannot use. The message names the rule, the value and the fix."""


class SearchExhaustedError(StudentNASError):
    """A searcher could not propose a new feasible architecture: the space is used up, or (when
    ``cheapest`` is set) even the space's cheapest architecture is over the budget."""

    def __init__(self, message: str, cheapest: object | None = None):
        super().__init__(message)
        self.cheapest = cheapest  # the Arch a repair ended on, when it did not fit either
