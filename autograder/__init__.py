"""An autograder that student code cannot fool.

Student code runs only in sandboxed child processes (everything under
:mod:`autograder.sandbox`, the untrusted side) that answer probes with
plain data (:mod:`coursekit.checks.plain`). The trusted judge (:mod:`autograder.judge`)
computes reference answers itself on fresh random inputs, compares, and stores
everything in a SQLite gradebook (:mod:`autograder.gradebook`) before exporting
CSV, Gradescope JSON and feedback (:mod:`autograder.export`).

    python -m autograder assign
    python -m autograder grade --lab 01_backprop submissions/ --out out/ --workers 2
    python -m autograder export --lab 01_backprop --out out/
    python -m autograder export-gradescope --lab 01_backprop
"""
__version__ = "0.1.0"
