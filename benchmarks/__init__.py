"""Side-by-side benchmarks: sanpath and a peer on the same data in the same run, results in BENCHMARKS.md.

Run with ``.venv/bin/python -m benchmarks`` (or ``./run bench``); ``--help`` lists the knobs.
"""
