"""The registration state machine alone: a complete table, ordered outputs from a recording
fake (no network, no clock)."""

from __future__ import annotations

from typing import Any

import pytest

from callmeter.sip import registration_state
from callmeter.sip.registration import Registration
from callmeter.sip.registration_state import (
    REGISTRATION_TABLE,
    RegistrationInput,
    RegistrationMachine,
    RegistrationState,
    missing_rows,
)
from callmeter.sip.state_table import StateError, outputs_of

from .doc_tables import doc_rows

I, S = RegistrationInput, RegistrationState  # noqa: E741


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda event: self.events.append(name)


def run(*inputs: RegistrationInput) -> tuple[RegistrationState, list[str]]:
    recorder = Recorder()
    machine = RegistrationMachine(recorder)
    for name in inputs:
        machine.feed(name)
    return machine.state, recorder.events


def test_every_state_has_a_row_for_every_input() -> None:
    assert missing_rows(REGISTRATION_TABLE) == []
    assert len(REGISTRATION_TABLE) == len(S) * len(I)
    for row in REGISTRATION_TABLE.values():
        if row.to is None and not row.outputs and row.error is None:
            assert row.note


def test_every_output_is_a_method_of_registration() -> None:
    assert {n for n in outputs_of(REGISTRATION_TABLE) if not hasattr(Registration, n)} == set()


def test_register_refresh_and_unregister() -> None:
    state, events = run(
        I.START, I.CHALLENGE, I.SUCCESS, I.REFRESH_DUE, I.SUCCESS, I.STOP, I.CHALLENGE, I.SUCCESS
    )
    assert state is S.STOPPED
    assert events == [
        "send_register",
        "resend_register",
        "note_registered",
        "arm_refresh",
        "send_register",
        "refreshed",
        "arm_refresh",
        "cancel_refresh",
        "send_unregister",
        "resend_unregister",
        "stopped",
    ]


def test_stop_during_the_first_register_unregisters_what_it_gets() -> None:
    """Issue 12: no 3,600 s binding left behind by a stop() during the first REGISTER."""
    state, events = run(I.START, I.STOP, I.SUCCESS, I.SUCCESS)
    assert state is S.STOPPED
    assert events == ["send_register", "fail_first_stopped", "send_unregister", "stopped"]


@pytest.mark.parametrize("outcome", [I.CHALLENGE, I.FAILURE, I.TIMEOUT, I.TRANSPORT_ERROR])
def test_stop_during_the_first_register_with_nothing_bound(outcome: RegistrationInput) -> None:
    state, events = run(I.START, I.STOP, outcome)
    assert state is S.STOPPED and events == ["send_register", "fail_first_stopped", "stopped"]


def test_stop_during_a_refresh_waits_for_its_answer() -> None:
    state, events = run(I.START, I.SUCCESS, I.REFRESH_DUE, I.STOP)
    assert state is S.STOP_AFTER_REFRESH and events[-1] == "send_register"
    state, events = run(I.START, I.SUCCESS, I.REFRESH_DUE, I.STOP, I.FAILURE, I.SUCCESS)
    assert state is S.STOPPED and events[-2:] == ["send_unregister", "stopped"]


@pytest.mark.parametrize("outcome", [I.FAILURE, I.TIMEOUT, I.TRANSPORT_ERROR])
def test_every_failed_first_register_is_classified(outcome: RegistrationInput) -> None:
    state, events = run(I.START, outcome, I.STOP)
    assert state is S.STOPPED and events == ["send_register", "fail_first", "stopped"]


def test_a_failed_refresh_lapses_and_retries() -> None:
    state, events = run(I.START, I.SUCCESS, I.REFRESH_DUE, I.TIMEOUT, I.REFRESH_DUE, I.SUCCESS)
    assert state is S.REGISTERED
    assert events[-5:] == [
        "refresh_failed",
        "arm_retry",
        "send_register",
        "refreshed",
        "arm_refresh",
    ]
    state, events = run(I.START, I.SUCCESS, I.REFRESH_DUE, I.TIMEOUT, I.STOP)
    assert state is S.UNREGISTERING and events[-2:] == ["cancel_refresh", "send_unregister"]


def test_misuse_is_an_error() -> None:
    machine = RegistrationMachine(Recorder())
    with pytest.raises(StateError):
        machine.feed(I.SUCCESS)
    machine.feed(I.START)
    with pytest.raises(StateError):
        machine.feed(I.START)


def test_the_docstring_table_says_what_the_table_does() -> None:
    rows = doc_rows(registration_state.__doc__ or "", RegistrationState, RegistrationInput)
    assert len(rows) == 23
    for states, inputs, target, outputs in rows:
        for state in states:
            for name in inputs:
                row = REGISTRATION_TABLE[(S[state], I[name])]
                moved = (row.to or S[state]).name
                assert target in (moved, "(stays)"), (state, name, target, moved)
                assert list(row.outputs) == outputs, (state, name)
