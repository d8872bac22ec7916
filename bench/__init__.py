"""Benchmarks of the decision engine and the HTTP service (see docs/performance.md).

.venv/bin/python -m bench.world --users 100000 --structures 10000 --grants 1000000
.venv/bin/python -m bench.run --size full        # or: make bench
"""
