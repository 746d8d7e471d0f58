"""Shared test configuration.

Hypothesis runs derandomized (the same examples every run) and without a
per-example deadline, so the unit suite is deterministic on a loaded CI machine.
"""

from hypothesis import settings

settings.register_profile("callmeter", derandomize=True, deadline=None, max_examples=200)
settings.load_profile("callmeter")
