"""The one status type of the grader: of a submission, and of each test in it.

It is a ``StrEnum``, so a status reads back from SQLite or JSON as plain text and
compares equal to it:

>>> Status("graded") is Status.GRADED and Status.GRADED == "graded"
True
>>> Status.TOO_LARGE.bad_input, Status.TIMEOUT.severe
(True, True)
"""
from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    # a submission on its way through the grader
    PENDING = "pending"
    # a submission that ran: every test is scored
    GRADED = "graded"
    # severe test statuses; a submission takes the first one its tests hit
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    CRASH = "crash"
    # bad input: the notebook could not be run at all
    UNREADABLE = "unreadable"
    EMPTY_FILE = "empty_file"
    BINARY_FILE = "binary_file"
    TOO_LARGE = "too_large"
    INVALID_JSON = "invalid_json"
    WRONG_FORMAT = "wrong_format"
    WRONG_LAB = "wrong_lab"
    NO_NOTEBOOK = "no_notebook"
    # the grader itself failed on this submission (retried on the next run)
    INTERNAL_ERROR = "internal_error"
    # one test
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"

    @property
    def bad_input(self) -> bool:
        return self in BAD_INPUT

    @property
    def severe(self) -> bool:
        return self in SEVERE

    @classmethod
    def of(cls, value, default: "Status") -> "Status":
        """``Status(value)``, or ``default`` for anything that is not a status (untrusted input)."""
        try:
            return cls(value) if isinstance(value, str) else default
        except ValueError:
            return default


#: The submission could not be run at all (the exit code is 1).
BAD_INPUT = frozenset({Status.UNREADABLE, Status.EMPTY_FILE, Status.BINARY_FILE, Status.TOO_LARGE,
                       Status.INVALID_JSON, Status.WRONG_FORMAT, Status.WRONG_LAB, Status.NO_NOTEBOOK})
#: Test statuses that cost a test its points through no comparison at all, in order of precedence.
SEVERE = (Status.TIMEOUT, Status.MEMORY_LIMIT, Status.CRASH)
#: Statuses that are worth trying again on the next run (our failures, not the student's).
RETRY = frozenset({Status.INTERNAL_ERROR})
