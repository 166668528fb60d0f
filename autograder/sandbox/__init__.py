"""The untrusted side of the grader: everything here runs student code or stands next to it.

A reader of the tree can tell the trust boundary by the folder:

- ``autograder/sandbox/`` (this package) runs inside the worker processes:
  :mod:`.worker` (the grader's contact, root, never runs student code; it enforces
  the protocol and deadlines), :mod:`.zygote` (the pristine fork server),
  :mod:`.child` (runs the student's cells and answers probes), :mod:`.jail`,
  :mod:`.seccomp` and :mod:`.cgroups` (the isolation), :mod:`.wire` (the frames and
  their schema) and :mod:`.limits`.
- everything else in ``autograder/`` is trusted: it never imports or calls student
  code, and reads only plain data that crossed :mod:`.wire`.

>>> Limits().memory_mb
1024
"""
from .jail import capabilities
from .limits import Limits

__all__ = ["Limits", "capabilities"]
