"""raise_open_files_limit: soft up to hard, never down, errors leave it alone."""

from __future__ import annotations

import resource

import pytest

from callmeter import limits


def fake_limits(
    monkeypatch: pytest.MonkeyPatch, soft: int, hard: int, fail: bool = False
) -> list[tuple[int, int]]:
    calls: list[tuple[int, int]] = []

    def setrlimit(which: int, value: tuple[int, int]) -> None:
        assert which == resource.RLIMIT_NOFILE
        if fail:
            raise ValueError("not allowed")
        calls.append(value)

    monkeypatch.setattr(limits.resource, "getrlimit", lambda which: (soft, hard))
    monkeypatch.setattr(limits.resource, "setrlimit", setrlimit)
    return calls


def test_soft_limit_goes_up_to_the_hard_one(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_limits(monkeypatch, 1024, 524288)
    assert limits.raise_open_files_limit() == 524288
    assert calls == [(524288, 524288)]


def test_unlimited_hard_limit_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_limits(monkeypatch, 1024, resource.RLIM_INFINITY)
    assert limits.raise_open_files_limit() == limits.CEILING
    assert calls == [(limits.CEILING, resource.RLIM_INFINITY)]


def test_never_lowered_and_errors_leave_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_limits(monkeypatch, 65536, 65536)
    assert limits.raise_open_files_limit() == 65536
    assert calls == []
    calls = fake_limits(monkeypatch, 1024, 4096, fail=True)
    assert limits.raise_open_files_limit() == 1024
    assert calls == []


def test_really_raises_this_process_soft_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        got = limits.raise_open_files_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == got
        assert (
            got == min(hard, limits.CEILING) if hard != resource.RLIM_INFINITY else limits.CEILING
        )
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
