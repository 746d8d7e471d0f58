"""The call state machines alone: complete tables, and ordered outputs from recording fakes
(magic-wormhole's test_machines.py style: no network, no clock)."""

from __future__ import annotations

from typing import Any

import pytest

from callmeter.sip import call_state
from callmeter.sip.call import IncomingCall, OutgoingCall
from callmeter.sip.call_state import (
    UAC_TABLE,
    UAS_TABLE,
    CallInput,
    CallMachine,
    CallState,
    CallStateError,
    Table,
    missing_rows,
    outputs_of,
)

from .doc_tables import doc_rows

I, S = CallInput, CallState  # noqa: E741


class Recorder:
    """Any output is recorded by name, in order; ``then`` feeds an input from an output."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.machine: CallMachine | None = None
        self.then: dict[str, CallInput] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def output(event: Any) -> None:
            self.events.append(name)
            follow = self.then.get(name)
            if follow is not None:
                assert self.machine is not None
                self.machine.feed(follow)

        return output


def machine(table: Table) -> tuple[CallMachine, Recorder]:
    recorder = Recorder()
    recorder.machine = CallMachine(table, recorder)
    return recorder.machine, recorder


def run(table: Table, *inputs: CallInput) -> tuple[CallState, list[str]]:
    m, recorder = machine(table)
    for name in inputs:
        m.feed(name)
    return m.state, recorder.events


@pytest.mark.parametrize("table", [UAC_TABLE, UAS_TABLE], ids=["uac", "uas"])
def test_every_state_has_a_row_for_every_input(table: Table) -> None:
    assert missing_rows(table) == []
    assert len(table) == len(CallState) * len(CallInput)
    for row in table.values():  # an ignore says why; an error says why; no row does both
        assert not (row.error and row.outputs)
        if row.to is None and not row.outputs and row.error is None:
            assert row.note


@pytest.mark.parametrize(
    ("table", "shell"), [(UAC_TABLE, OutgoingCall), (UAS_TABLE, IncomingCall)], ids=["uac", "uas"]
)
def test_every_output_is_a_method_of_its_call(table: Table, shell: type) -> None:
    missing = {name for name in outputs_of(table) if not callable(getattr(shell, name, None))}
    assert missing == set()


def test_network_inputs_are_never_errors_in_reachable_states() -> None:
    """What a peer sends may be late or odd, never a crash: errors are for our own misuse."""
    peer = [
        I.PROVISIONAL,
        I.SUCCESS,
        I.FAILURE,
        I.TIMEOUT,
        I.TRANSPORT_ERROR,
        I.CANCEL_RECEIVED,
        I.BYE_RECEIVED,
        I.REINVITE,
        I.REQUEST,
        I.ACK_RECEIVED,
    ]
    uac = [S.CALLING, S.EARLY, S.CANCEL_PENDING, S.CANCELLING, S.CONFIRMED, S.DISCONNECTED]
    for state in uac:
        for name in peer:
            assert UAC_TABLE[(state, name)].error is None, (state, name)
    uas = [S.INCOMING, S.EARLY, S.CONNECTING, S.BYE_PENDING, S.CONFIRMED, S.DISCONNECTED]
    for state in uas:
        for name in (I.CANCEL_RECEIVED, I.BYE_RECEIVED, I.REINVITE, I.REQUEST, I.ACK_RECEIVED):
            assert UAS_TABLE[(state, name)].error is None, (state, name)


# -- the UAC ------------------------------------------------------------------------------


def test_uac_answered_call_and_local_bye() -> None:
    state, events = run(UAC_TABLE, I.START, I.PROVISIONAL, I.PROVISIONAL, I.SUCCESS, I.HANGUP)
    assert state is S.DISCONNECTED
    assert events == [
        "send_invite",
        "arm_setup_timer",
        "note_provisional",
        "note_provisional",
        "adopt_dialog",
        "send_ack",
        "start_session",
        "send_bye",
        "end_local_bye",
    ]


def test_uac_hangup_before_a_provisional_waits_to_cancel() -> None:
    """9.1: no CANCEL before a provisional response; then CANCEL, then the 487."""
    m, recorder = machine(UAC_TABLE)
    m.feed(I.START)
    m.feed(I.HANGUP)
    assert m.state is S.CANCEL_PENDING and "send_cancel" not in recorder.events
    m.feed(I.HANGUP)  # a second hangup changes nothing
    m.feed(I.PROVISIONAL)
    assert m.state is S.CANCELLING and recorder.events[-1] == "send_cancel"
    m.feed(I.PROVISIONAL)
    m.feed(I.FAILURE)
    assert m.state is S.DISCONNECTED
    assert recorder.events[2:] == ["note_provisional", "send_cancel", "fail_cancelled"]


def test_uac_a_2xx_crossing_the_cancel_is_acked_and_byed() -> None:
    state, events = run(UAC_TABLE, I.START, I.PROVISIONAL, I.HANGUP, I.SUCCESS)
    assert state is S.DISCONNECTED
    assert events[-5:] == ["send_cancel", "adopt_dialog", "send_ack", "send_bye", "fail_cancelled"]


def test_uac_setup_timeout_classifies_408_and_still_cancels() -> None:
    state, events = run(UAC_TABLE, I.START, I.SETUP_TIMEOUT, I.PROVISIONAL, I.FAILURE)
    assert state is S.DISCONNECTED
    assert events[2:] == ["fail_setup_timeout", "note_provisional", "send_cancel", "fail_cancelled"]
    state, events = run(UAC_TABLE, I.START, I.PROVISIONAL, I.SETUP_TIMEOUT)
    assert state is S.CANCELLING and events[-2:] == ["send_cancel", "fail_setup_timeout"]


@pytest.mark.parametrize(
    ("name", "output"),
    [(I.TIMEOUT, "fail_timeout"), (I.TRANSPORT_ERROR, "fail_transport"), (I.FAILURE, "fail")],
)
def test_uac_every_unanswered_ending_is_classified(name: CallInput, output: str) -> None:
    for before in ([], [I.PROVISIONAL]):
        state, events = run(UAC_TABLE, I.START, *before, name)
        assert state is S.DISCONNECTED and events[-1] == output


def test_uac_challenge_resends_the_invite() -> None:
    state, events = run(UAC_TABLE, I.START, I.PROVISIONAL, I.CHALLENGE)
    assert state is S.CALLING and events[-1] == "send_invite"


def test_uac_unusable_answer_is_fed_back_and_ends_with_bye() -> None:
    m, recorder = machine(UAC_TABLE)
    recorder.then["start_session"] = I.ANSWER_REJECTED
    m.feed(I.START)
    m.feed(I.SUCCESS)
    assert m.state is S.DISCONNECTED
    assert recorder.events[-4:] == ["send_ack", "start_session", "send_bye", "fail_answer"]


def test_uac_late_messages_after_the_end() -> None:
    state, events = run(
        UAC_TABLE, I.START, I.SUCCESS, I.HANGUP, I.SUCCESS, I.PROVISIONAL, I.BYE_RECEIVED
    )
    assert state is S.DISCONNECTED
    assert events[-3:] == ["end_local_bye", "ack_again", "refuse_481"]


def test_uac_errors_are_our_misuse() -> None:
    m, _ = machine(UAC_TABLE)
    with pytest.raises(CallStateError):
        m.feed(I.SUCCESS)  # nothing sent yet
    m.feed(I.START)
    with pytest.raises(CallStateError):
        m.feed(I.START)
    with pytest.raises(CallStateError):
        m.feed(I.ANSWER)  # a UAS input


# -- the UAS ------------------------------------------------------------------------------


def test_uas_rings_answers_and_is_confirmed() -> None:
    state, events = run(UAS_TABLE, I.INVITE, I.RING, I.ANSWER, I.ACK_RECEIVED, I.BYE_RECEIVED)
    assert state is S.DISCONNECTED
    assert events == [
        "accept_invite",
        "send_ringing",
        "send_ok",
        "confirm",
        "answer_bye",
        "end_remote_bye",
    ]


@pytest.mark.parametrize("before", [[], [I.RING]], ids=["incoming", "early"])
def test_uas_hangup_before_the_answer_rejects_the_invite_at_once(before: list[CallInput]) -> None:
    """Issue 12: hanging up an unanswered incoming call answers its INVITE and ends it."""
    m, recorder = machine(UAS_TABLE)
    m.feed(I.INVITE)
    for name in before:
        m.feed(name)
    m.feed(I.HANGUP)
    assert m.state is S.DISCONNECTED
    assert recorder.events[-2:] == ["decline", "end_rejected"]
    m.feed(I.ANSWER)  # the answer timer, had it fired late: ignored
    assert recorder.events[-1] == "end_rejected"


def test_uas_cancel_and_early_bye() -> None:
    state, events = run(UAS_TABLE, I.INVITE, I.RING, I.CANCEL_RECEIVED)
    assert state is S.DISCONNECTED and events[-2:] == ["reject_terminated", "end_cancelled"]
    state, events = run(UAS_TABLE, I.INVITE, I.RING, I.BYE_RECEIVED)  # 15.1.2
    assert events[-3:] == ["answer_bye", "reject_terminated", "end_remote_bye"]


def test_uas_hangup_before_the_ack_waits_for_it() -> None:
    """15: the callee MUST NOT send BYE before the ACK (or the 2xx's timeout)."""
    m, recorder = machine(UAS_TABLE)
    for name in (I.INVITE, I.RING, I.ANSWER, I.HANGUP):
        m.feed(name)
    assert m.state is S.BYE_PENDING and "send_bye" not in recorder.events
    m.feed(I.ACK_RECEIVED)
    assert m.state is S.DISCONNECTED
    assert recorder.events[-3:] == ["confirm", "send_bye", "end_local_bye"]
    state, events = run(UAS_TABLE, I.INVITE, I.ANSWER, I.HANGUP, I.ACK_TIMEOUT)
    assert events[-2:] == ["send_bye", "end_no_ack"]


def test_uas_bad_invite_and_reinvite_before_the_answer() -> None:
    state, events = run(UAS_TABLE, I.BAD_INVITE, I.RING)
    assert state is S.DISCONNECTED and events == ["reject", "end_failed"]
    state, events = run(UAS_TABLE, I.INVITE, I.REINVITE)
    assert state is S.INCOMING and events[-1] == "refuse_500"  # 14.2


def test_transitions_are_reported_in_order() -> None:
    steps: list[tuple[str, str, str]] = []
    m = CallMachine(
        UAS_TABLE,
        Recorder(),
        on_transition=lambda old, name, new: steps.append((old.name, name.name, new.name)),
    )
    m.feed(I.INVITE)
    m.feed(I.CANCEL_RECEIVED)
    assert steps == [
        ("NULL", "INVITE", "INCOMING"),
        ("INCOMING", "CANCEL_RECEIVED", "DISCONNECTED"),
    ]


@pytest.mark.parametrize(("marker", "table"), [("UAC (", UAC_TABLE), ("UAS (", UAS_TABLE)])
def test_the_docstring_tables_say_what_the_tables_do(marker: str, table: Table) -> None:
    doc = call_state.__doc__ or ""
    start = doc.index(marker)
    end = doc.index("UAS (") if marker == "UAC (" else doc.index("The full tables")
    rows = doc_rows(doc[start:end], CallState, CallInput)
    assert len(rows) >= 17
    for states, inputs, target, outputs in rows:
        for state in states:
            for name in inputs:
                row = table[(S[state], I[name])]
                moved = (row.to or S[state]).name
                assert target in (moved, "(stays)"), (state, name, target, moved)
                assert list(row.outputs) == outputs, (state, name)
