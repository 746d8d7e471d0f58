"""A worker process's "setup": the media paths the coordinator fetched are used as they are;
only a setup without them (an older coordinator) makes the worker fetch."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from callmeter.engine import child as child_module
from callmeter.engine import media as media_module

URL = "https://media.example/tone.wav"
PLAN = {
    "name": "child-setup",
    "duration_s": 10,
    "groups": [
        {"name": "callees", "role": "callee", "count": 1, "user": "in-{i}", "media": URL},
    ],
}


def setup_child(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[Any], list[Any]]:
    fetched: list[Any] = []
    prepared: list[Any] = []

    def fetch(config: Any, plan: Any, reactor: Any) -> defer.Deferred[dict[str, str]]:
        fetched.append(plan.name)
        return defer.succeed({URL: "/fetched/by/the/worker.wav"})

    monkeypatch.setattr(media_module, "fetch_plan_media", fetch)
    monkeypatch.setenv("SIP_IP", "127.0.0.1")
    child = child_module._Child(Clock(), defer.Deferred())
    monkeypatch.setattr(
        child, "prepare", lambda config, plan, files, message: prepared.append(files)
    )
    return child, fetched, prepared


def setup_message(**extra: Any) -> dict[str, Any]:
    return {"type": "setup", "plan": PLAN, "shard": 0, "shards": 2, "window_s": 5.0,
            "run_id": "r-1", **extra}  # fmt: skip


def test_the_coordinators_media_paths_are_used_and_nothing_is_fetched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    child, fetched, prepared = setup_child(monkeypatch)
    child.setup(setup_message(media={URL: "/cache/tone.wav"}))
    assert fetched == []
    assert prepared == [{URL: "/cache/tone.wav"}]


def test_a_setup_without_paths_fetches_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    child, fetched, prepared = setup_child(monkeypatch)
    child.setup(setup_message())
    assert fetched == ["child-setup"]
    assert prepared == [{URL: "/fetched/by/the/worker.wav"}]
