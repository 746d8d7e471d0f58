"""TestRun on real loopback sockets: the worker calls itself, signalling end to end."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from callmeter.config import load_config
from callmeter.engine.metrics import StreamResult
from callmeter.engine.run import TestRun
from callmeter.plan import parse_plan
from tests.unit.engine.fakes import one_second_of_audio
from tests.unit.sipua.sdp_media import SdpOnlyMedia


class FakeStreamsMedia(SdpOnlyMedia):
    """Real SDP, no RTP; reports one perfect stream per call so the metrics path is exercised."""

    def results(self) -> list[StreamResult]:
        if "start" not in self.events:
            return []
        return [one_second_of_audio()]


def plan(**call: Any) -> Any:
    return parse_plan(
        {
            "name": "engine-test",
            "duration_s": 4,
            "ramp_up_s": 0,
            "groups": [
                {
                    "name": "callees",
                    "role": "callee",
                    "count": 4,
                    "user": "in-{i}",
                    "answer_delay_s": 0.1,
                },
                {
                    "name": "callers",
                    "role": "caller",
                    "count": 4,
                    "user": "out-{i}",
                    "call": {"to": "callees", "duration_s": 1, "rate_per_s": 20, **call},
                },
            ],
        },
        max_endpoints=100,
    )


class EngineRunTests(TestCase):
    timeout = 30

    def run_plan(self, the_plan: Any, **kwargs: Any) -> tuple[TestRun, list[dict[str, Any]]]:
        config = load_config({"SIP_IP": "127.0.0.1", "SIP_PORT": "0"}, require_token=False)
        windows: list[dict[str, Any]] = []
        run = TestRun(
            the_plan,
            config,
            reactor,
            lambda group: FakeStreamsMedia(),
            on_window=windows.append,
            window_s=1.0,
            **kwargs,
        )
        return run, windows

    @defer.inlineCallbacks
    def test_loopback_calls_all_established_and_reported(self) -> Any:
        run, windows = self.run_plan(plan())
        report = yield run.start()
        total = report["total"]
        self.assertEqual(total["sip"]["calls"]["attempted"], 4)
        self.assertEqual(total["sip"]["calls"]["established"], 4)
        self.assertEqual(total["sip"]["calls"]["failed"], 0)
        self.assertIsNotNone(total["sip"]["setup_time_ms"]["p95"])
        self.assertLess(total["sip"]["setup_time_ms"]["max"], 1000)
        self.assertGreaterEqual(total["sip"]["setup_time_ms"]["p50"], 100)  # answer delay
        self.assertEqual(report["groups"]["callees"]["sip"]["calls"]["established"], 4)
        self.assertEqual(total["rtp"]["received"]["packets"], 8 * 50)  # both sides' streams
        self.assertTrue(report["pass"]["passed"], report["pass"])
        seqs = [w["seq"] for w in windows]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)))
        self.assertEqual(sum(w["total"]["sip"]["calls"]["attempted"] for w in windows), 4)
        self.assertEqual([c.end for c in run.calls if c.direction == "out"], ["local BYE"] * 4)

    @defer.inlineCallbacks
    def test_cancel_hangs_up_and_still_reports(self) -> Any:
        run, _ = self.run_plan(plan(duration_s=30))
        finished = run.start()
        yield _sleep(1.0)
        self.assertGreater(run.progress()["calls_up"], 0)
        report = yield run.cancel()
        self.assertEqual(report["total"]["sip"]["calls"]["established"], 4)
        self.assertLess(report["duration_s"], 5)
        self.assertTrue(finished.called)
        self.assertEqual(run.active, set())

    @defer.inlineCallbacks
    def test_unreachable_sip_uri_target_fails_with_a_code(self) -> Any:
        the_plan = parse_plan(
            {
                "name": "dead-target",
                "duration_s": 3,
                "groups": [
                    {
                        "name": "callers",
                        "role": "caller",
                        "count": 1,
                        "user": "c-{i}",
                        "call": {
                            "to": "sip:nobody@127.0.0.1:9;transport=tcp",
                            "duration_s": 1,
                            "rate_per_s": 1,
                        },
                    }
                ],
            },
            max_endpoints=10,
        )
        run, _ = self.run_plan(the_plan)
        report = yield run.start()
        calls = report["total"]["sip"]["calls"]
        self.assertEqual((calls["attempted"], calls["failed"]), (1, 1))
        self.assertEqual(calls["failed_by_code"], {"503": 1})
        self.assertFalse(report["pass"]["passed"])


def _sleep(seconds: float) -> defer.Deferred[None]:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)
