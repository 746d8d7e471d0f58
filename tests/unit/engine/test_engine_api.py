"""callmeter.engine.Engine, the one interface of `callmeter run` and the daemon: one parse, media
fetched once, the process count chosen, worker processes handed the fetched paths, windows
typed, and a run handle that both callers hold the same way."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from callmeter.config import load_config
from callmeter.control.engine_api import MetricWindow, PrepareError
from callmeter.engine import Engine, Prepared, media_reason
from callmeter.engine import engine as engine_module
from callmeter.engine.service import PlanEngine
from callmeter.plan import PlanError

MEDIA = "https://media.example/tone.wav"


def plan(callers: int = 2, callees: int = 2, media: str | None = None) -> dict[str, Any]:
    caller: dict[str, Any] = {
        "name": "callers",
        "role": "caller",
        "count": callers,
        "user": "out-{i}",
        "call": {"to": "callees", "duration_s": 3, "rate_per_s": 10},
    }
    if media:
        caller["media"] = media
    return {
        "name": "engine-api",
        "duration_s": 10,
        "groups": [
            {"name": "callees", "role": "callee", "count": callees, "user": "in-{i}"},
            caller,
        ],
    }


class Fetches:
    """A media fetch that records its calls: ``fail`` makes it fail like a 404."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail = fail

    def __call__(self, config: Any, parsed: Any, reactor: Any) -> defer.Deferred[dict[str, str]]:
        urls = tuple(sorted({g.media for g in parsed.groups if g.media}))
        self.calls.append(urls)
        if self.fail is not None:
            return defer.fail(ValueError(f"media {urls[0]}: {self.fail}"))
        return defer.succeed({url: f"/cache/{index}.wav" for index, url in enumerate(urls)})


def make(fetch: Fetches | None = None, **kwargs: Any) -> tuple[Engine, Fetches]:
    config = load_config({"MAX_ENDPOINTS": "100"}, require_token=False)
    fetch = fetch or Fetches()
    return Engine(config, Clock(), environ={}, fetch_media=fetch, **kwargs), fetch


def result_of(deferred: defer.Deferred[Any]) -> Any:
    out: list[Any] = []
    deferred.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


def count_parses(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The plans the engine parses from now on (callmeter.plan.parse_plan as it calls it)."""
    parses: list[object] = []
    real = engine_module.parse_plan

    def counting(data: Any, *, max_endpoints: int) -> Any:
        parses.append(data)
        return real(data, max_endpoints=max_endpoints)

    monkeypatch.setattr(engine_module, "parse_plan", counting)
    return parses


def test_validate_endpoints_and_prepare_parse_the_plan_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parses = count_parses(monkeypatch)
    engine, _ = make()
    data = plan(3, 2)
    assert engine.validate(data) == []
    assert engine.endpoints(data) == 5
    prepared = result_of(engine.prepare(data))
    assert prepared.endpoints == 5 and prepared.name == "engine-api"
    assert len(parses) == 1
    other = plan(1, 1)
    assert engine.endpoints(other) == 2  # another plan is parsed, once
    assert len(parses) == 2


def test_an_invalid_plan_names_every_problem_and_is_never_prepared() -> None:
    engine, fetch = make()
    data = {"name": "x", "duration_s": 0, "groups": [{"name": "g", "count": "many"}]}
    problems = engine.validate(data)
    assert len(problems) >= 2 and any(p.startswith("groups[0].count") for p in problems)
    assert engine.endpoints(data) == 0
    with pytest.raises(PlanError) as raised:
        result_of(engine.prepare(data))
    assert raised.value.problems == problems
    assert fetch.calls == []


def test_media_is_fetched_once_and_a_bad_url_is_a_clear_refusal() -> None:
    engine, fetch = make()
    prepared = result_of(engine.prepare(plan(media=MEDIA)))
    assert isinstance(prepared, Prepared)
    assert prepared.media == {MEDIA: "/cache/0.wav"}
    assert fetch.calls == [(MEDIA,)]

    refusing, _ = make(Fetches(fail="HTTP 404 Not Found"))
    with pytest.raises(PrepareError) as raised:
        result_of(refusing.prepare(plan(media=MEDIA)))
    assert str(raised.value) == f"media: {MEDIA}: HTTP 404 Not Found"
    assert media_reason(ValueError("disk full")) == "media: disk full"


@pytest.mark.parametrize(
    ("processes", "in_process", "endpoints", "expected"),
    [
        (8, False, 4, 4),  # no more processes than endpoints
        (2, False, 10, 2),
        (1, False, 4, 1),  # the daemon: even one process is a worker process
        (4, False, 1, 1),
        (1, True, 4, 0),  # callmeter run --processes 1: in the caller's reactor
        (4, True, 1, 0),
        (2, True, 4, 2),
    ],
)
def test_the_process_count(processes: int, in_process: bool, endpoints: int, expected: int) -> None:
    engine, _ = make(processes=processes, in_process=in_process)
    data = plan(endpoints // 2, endpoints - endpoints // 2)
    if endpoints == 1:  # one callee, no caller
        data["groups"] = data["groups"][:1]
    prepared = result_of(engine.prepare(data))
    assert prepared.processes == expected


def test_the_daemon_engine_never_runs_in_its_own_reactor() -> None:
    config = load_config({}, require_token=False)
    engine = PlanEngine(config, Clock(), processes=1, environ={})
    assert engine.in_process is False


class FakeSharded:
    """Stands in for ShardedRun: records how it was made and started."""

    made: list[FakeSharded] = []

    def __init__(self, parsed: Any, config: Any, reactor: Any, processes: int, **kw: Any) -> None:
        self.processes = processes
        self.kw = kw
        self.media_files: Any = None
        self.finished: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self.calls: list[Any] = []
        self.cancelled = 0
        FakeSharded.made.append(self)

    def start(self, media_files: Any = None) -> defer.Deferred[dict[str, Any]]:
        self.media_files = media_files
        return self.finished

    def progress(self) -> dict[str, Any]:
        return {"calls_up": 3}

    def cancel(self) -> defer.Deferred[dict[str, Any]]:
        self.cancelled += 1
        return self.finished

    def abort(self) -> defer.Deferred[dict[str, Any]]:
        return self.cancel()


def test_start_hands_the_workers_the_fetched_files_and_typed_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FakeSharded.made = []
    monkeypatch.setattr(engine_module, "ShardedRun", FakeSharded)
    engine, fetch = make(processes=2)
    prepared = result_of(engine.prepare(plan(media=MEDIA)))
    windows: list[MetricWindow] = []
    handle = engine.start("r-1", prepared, windows.append)
    (sharded,) = FakeSharded.made
    assert sharded.processes == 2 and sharded.kw["run_id"] == "r-1"
    assert sharded.media_files == {MEDIA: "/cache/0.wav"}
    assert fetch.calls == [(MEDIA,)]  # once, here: the workers fetch nothing

    sharded.kw["on_window"]({"seq": 1, "start": 1.0, "end": 6.0, "groups": {"g": {}}, "total": {}})
    assert windows == [MetricWindow(1.0, 6.0, {"g": {}}, {})]
    assert handle.progress() == {"calls_up": 3}
    assert handle.active_endpoints == 4

    stopped = handle.cancel()
    assert sharded.cancelled == 1 and not stopped.called
    reports: list[Any] = []
    handle.finished.addCallback(reports.append)
    sharded.finished.callback({"pass": {"passed": False}})
    assert stopped.called and reports == [{"pass": {"passed": False}}]
    assert handle.active_endpoints == 0
    assert handle.cancel().called  # after the end: at once


def test_a_plan_prepared_elsewhere_is_refused() -> None:
    engine, _ = make()
    with pytest.raises(TypeError):
        engine.start("r-1", object(), lambda w: None)  # type: ignore[arg-type]
