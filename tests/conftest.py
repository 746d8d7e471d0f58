"""Shared test configuration.

Hypothesis runs derandomized (the same examples every run) and without a
per-example deadline, so the unit suite is deterministic on a loaded CI machine.
"""

from hypothesis import settings

settings.register_profile("callmeter", derandomize=True, deadline=None, max_examples=200)
settings.load_profile("callmeter")


def pytest_sessionfinish(session: object, exitstatus: int) -> None:
    """A run that collected no test is a failure with a reason, not pytest's bare exit code 5."""
    if exitstatus == 5:
        print("\nERROR: no tests ran: the selection matched nothing (a broken path or marker?)")
        session.exitstatus = 1  # type: ignore[attr-defined]
