"""The call state machines: one transition table per role, every state times every input.

The states are pjsip's invite-session states, plus three that make a wait explicit instead of
a flag (RFC 3261 section numbers in brackets):

- ``NULL``: made, nothing sent or received yet.
- ``CALLING``: UAC, our INVITE is out, no provisional response yet [13.2.1].
- ``INCOMING``: UAS, an INVITE arrived and was accepted for processing, no 1xx with a tag
  sent yet [13.3.1].
- ``EARLY``: a provisional response with a To tag came (UAC) or went (UAS): an early dialog
  [12.1, 13.2.2.1, 13.3.1.1].
- ``CONNECTING``: UAS, our 2xx went out, waiting for the ACK, 2xx retransmitted [13.3.1.4].
  The UAC never rests here: it ACKs a 2xx in the step that receives it [13.2.2.4].
- ``CONFIRMED``: the dialog is confirmed (2xx and ACK) [12.1, 13.2.2.4, 13.3.1.4].
- ``DISCONNECTED``: the call is over [15]; late messages are absorbed or answered here.
- ``CANCEL_PENDING``: UAC, hung up before any provisional response: the CANCEL waits for one
  [9.1: "the CANCEL request MUST NOT be sent" before].
- ``CANCELLING``: UAC, our CANCEL is out: waiting for the INVITE's final response, a 487, or a
  2xx that crossed the CANCEL (ACKed, then BYE) [9.1, 15].
- ``BYE_PENDING``: UAS, hung up after our 2xx but before its ACK: the BYE waits for the ACK
  or the 2xx's retransmission timeout [15: "MUST NOT send a BYE on a confirmed dialog until it
  has received an ACK for its 2xx response or until the server transaction times out"].

The inputs are the protocol events a call can see, local (``START``, ``RING``, ``ANSWER``,
``HANGUP``, the timers) or from the peer.  The tables :data:`UAC_TABLE` (the outgoing call,
13.2) and :data:`UAS_TABLE` (the incoming call, 13.3) give, for each (state, input), a
:class:`Row`: the next state and the outputs, named after the call they make on the call
object (``send_cancel``, ``send_bye``...), or an explicit *ignore* (a late or duplicated
message, absorbed), or an explicit *error* (an input that cannot happen in that state: a
misuse by our own code, raised as :class:`CallStateError`).  No pair is left out:
:func:`missing_rows` is empty for both tables, and the tests check it.

UAC (outgoing call; ``.``: no output; ``CANCEL_*``: both cancel states; rows abridged)::

    state           input             next            outputs
    NULL            START             CALLING         send_invite, arm_setup_timer
    NULL            HANGUP            DISCONNECTED    end_unsent
    CALLING         PROVISIONAL       EARLY           note_provisional                 13.2.2.1
    CALLING/EARLY   SUCCESS           CONFIRMED       adopt_dialog, send_ack, start_session
                                                                                       13.2.2.4
    CALLING/EARLY   FAILURE           DISCONNECTED    fail                             13.2.2.3
    CALLING/EARLY   CHALLENGE         CALLING         send_invite (with credentials)   22.2
    CALLING/EARLY   TIMEOUT           DISCONNECTED    fail_timeout (408)               8.1.3.1
    CALLING/EARLY   TRANSPORT_ERROR   DISCONNECTED    fail_transport (503)             8.1.3.1
    CALLING         HANGUP            CANCEL_PENDING  .                                9.1
    EARLY           HANGUP            CANCELLING      send_cancel                      9.1
    CALLING         SETUP_TIMEOUT     CANCEL_PENDING  fail_setup_timeout (408)
    EARLY           SETUP_TIMEOUT     CANCELLING      send_cancel, fail_setup_timeout (408)
    CANCEL_PENDING  PROVISIONAL       CANCELLING      note_provisional, send_cancel    9.1
    CANCEL_*        SUCCESS           DISCONNECTED    adopt_dialog, send_ack, send_bye,
                                                      fail_cancelled (487)             15
    CANCEL_*        FAILURE/CHALLENGE  DISCONNECTED   fail_cancelled (CANCELLED on 487)
    CANCEL_*        SETUP_TIMEOUT     (stays)         fail_setup_timeout (408)
    CONFIRMED       SUCCESS           CONFIRMED       ack_again (a fork's 2xx: ACK, BYE) 13.2.2.4
    CONFIRMED       ANSWER_REJECTED   DISCONNECTED    send_bye, fail_answer (488)
    CONFIRMED       BYE_RECEIVED      DISCONNECTED    answer_bye, end_remote_bye       15.1.2
    CONFIRMED       REINVITE          CONFIRMED       answer_reinvite                  14.2
    CONFIRMED       HANGUP            DISCONNECTED    send_bye, end_local_bye          15.1.1
    DISCONNECTED    SUCCESS           DISCONNECTED    ack_again                        13.2.2.4
    CALLING/EARLY/CANCEL_*  BYE_RECEIVED/REINVITE/REQUEST  (stays)  refuse_481 (no dialog yet)
                                                                                       12.2.2

UAS (incoming call)::

    NULL            INVITE            INCOMING        accept_invite                    13.3.1
    NULL            BAD_INVITE        DISCONNECTED    reject, end_failed               13.3.1.3
    NULL            HANGUP            DISCONNECTED    decline, end_rejected            13.3.1.3
    INCOMING        RING              EARLY           send_ringing                     13.3.1.1
    INCOMING/EARLY  ANSWER            CONNECTING      send_ok (and the media starts)   13.3.1.4
    INCOMING/EARLY  CANCEL_RECEIVED   DISCONNECTED    reject_terminated, end_cancelled 9.2
    INCOMING/EARLY  BYE_RECEIVED      DISCONNECTED    answer_bye, reject_terminated,
                                                      end_remote_bye                   15.1.2
    INCOMING/EARLY  HANGUP            DISCONNECTED    decline (480), end_rejected      13.3.1.3
    INCOMING/EARLY  REINVITE          (stays)         refuse_500 (Retry-After)         14.2
    CONNECTING      ACK_RECEIVED      CONFIRMED       confirm                          13.3.1.4
    CONNECTING      ACK_TIMEOUT       DISCONNECTED    send_bye, end_no_ack             13.3.1.4
    CONNECTING      HANGUP            BYE_PENDING     .                                15
    BYE_PENDING     ACK_RECEIVED      DISCONNECTED    confirm, send_bye, end_local_bye 15
    BYE_PENDING     ACK_TIMEOUT       DISCONNECTED    send_bye, end_no_ack             15
    CONNECTING/BYE_PENDING/CONFIRMED  BYE_RECEIVED  DISCONNECTED  answer_bye, end_remote_bye
                                                                                       15.1.2
    CONFIRMED       HANGUP            DISCONNECTED    send_bye, end_local_bye          15.1.1
    INCOMING+       TRANSPORT_ERROR   DISCONNECTED    end_transport (503)              8.1.3.1
    DISCONNECTED    BYE_RECEIVED/REINVITE/REQUEST  (stays)  refuse_481                 12.2.2

The full tables below are the reference; these abridged ones are for reading.  The machine is
sans-IO: it holds the state and calls the outputs on the object given; outputs may feed
further inputs (``ANSWER_REJECTED``), which run after the current transition (run to
completion).  Every ending output classifies the call once: the first classification wins
(a call that timed out and is then cancelled stays a 408).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping

from callmeter.sip.state_table import Machine, StateError, error, go, ignore, outputs_of, stay
from callmeter.sip.state_table import Row as _Row
from callmeter.sip.state_table import missing_rows as _missing_rows

__all__ = [
    "UAC_TABLE",
    "UAS_TABLE",
    "CallInput",
    "CallMachine",
    "CallState",
    "CallStateError",
    "Row",
    "missing_rows",
    "outputs_of",
]


class CallState(enum.Enum):
    NULL = "null"
    CALLING = "calling"
    INCOMING = "incoming"
    EARLY = "early"
    CONNECTING = "connecting"
    CONFIRMED = "confirmed"
    DISCONNECTED = "disconnected"
    CANCEL_PENDING = "cancel pending"
    CANCELLING = "cancelling"
    BYE_PENDING = "bye pending"


class CallInput(enum.Enum):
    # local
    START = "start"  # UAC: send the INVITE
    INVITE = "invite"  # UAS: a usable INVITE to answer (offer, Contact, tags checked)
    BAD_INVITE = "bad invite"  # UAS: an INVITE we refuse (no offer, no ports, no Contact)
    RING = "ring"  # UAS: send 180
    ANSWER = "answer"  # UAS: send 200 (the answer delay is over)
    HANGUP = "hangup"
    SETUP_TIMEOUT = "setup timeout"  # UAC: no answer within setup_timeout
    ANSWER_REJECTED = "answer rejected"  # UAC: the 2xx's SDP answer is unusable
    # from the peer, through the INVITE client transaction (UAC)
    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    FAILURE = "3xx-6xx"
    CHALLENGE = "401/407 we can answer"
    TIMEOUT = "timeout"  # Timer B (UAC), Timer H (UAS)
    TRANSPORT_ERROR = "transport error"
    # from the peer, requests
    CANCEL_RECEIVED = "CANCEL"
    BYE_RECEIVED = "BYE"
    REINVITE = "re-INVITE"
    REQUEST = "other request in the dialog"
    ACK_RECEIVED = "ACK"
    ACK_TIMEOUT = "no ACK in 64*T1"


CallStateError = StateError
Row = _Row[CallState]
Table = Mapping[tuple[CallState, CallInput], Row]

S = CallState
I = CallInput  # noqa: E741


def _all(state: CallState, row: Row) -> dict[tuple[CallState, CallInput], Row]:
    """``row`` for every input of ``state`` (a state the role never reaches)."""
    return {(state, name): row for name in CallInput}


def _cells(
    state: CallState, rows: Mapping[CallInput, Row]
) -> dict[tuple[CallState, CallInput], Row]:
    return {(state, name): row for name, row in rows.items()}


_UAS_ONLY = error("not an input of an outgoing call")
_LATE = ignore("a late or duplicated response: the transaction already ended the attempt")
_NO_DIALOG = stay("refuse_481")  # 12.2.2: no confirmed dialog of ours to take it

# Inputs the UAC never sees in any state.
_UAC_NEVER = {
    I.INVITE: _UAS_ONLY,
    I.BAD_INVITE: _UAS_ONLY,
    I.RING: _UAS_ONLY,
    I.ANSWER: _UAS_ONLY,
    I.ACK_TIMEOUT: _UAS_ONLY,
    I.CANCEL_RECEIVED: ignore("a CANCEL names a server transaction; the stack answers it"),
    I.ACK_RECEIVED: ignore("a UAC is never ACKed; a stray ACK is dropped"),
}

_CANCEL_WAIT = {
    I.START: error("already started"),
    I.SUCCESS: go(S.DISCONNECTED, "adopt_dialog", "send_ack", "send_bye", "fail_cancelled"),
    I.FAILURE: go(S.DISCONNECTED, "fail_cancelled"),
    I.CHALLENGE: go(S.DISCONNECTED, "fail_cancelled"),
    I.TIMEOUT: go(S.DISCONNECTED, "fail_timeout"),
    I.TRANSPORT_ERROR: go(S.DISCONNECTED, "fail_transport"),
    I.BYE_RECEIVED: _NO_DIALOG,
    I.REINVITE: _NO_DIALOG,
    I.REQUEST: _NO_DIALOG,
    I.HANGUP: ignore("already hanging up"),
    I.SETUP_TIMEOUT: stay("fail_setup_timeout"),
    I.ANSWER_REJECTED: error("no answer is applied while cancelling"),
    **_UAC_NEVER,
}

#: The outgoing call (UAC, RFC 3261 13.2).
UAC_TABLE: Table = {
    **_all(S.INCOMING, error("an outgoing call is never INCOMING")),
    **_all(S.CONNECTING, error("an outgoing call ACKs its 2xx at once, never CONNECTING")),
    **_all(S.BYE_PENDING, error("an outgoing call never waits for an ACK")),
    **_cells(
        S.NULL,
        {
            I.START: go(S.CALLING, "send_invite", "arm_setup_timer"),
            I.HANGUP: go(S.DISCONNECTED, "end_unsent"),
            **{
                name: error("not started")
                for name in CallInput
                if name not in (I.START, I.HANGUP, *_UAC_NEVER)
            },
            **_UAC_NEVER,
        },
    ),
    **_cells(
        S.CALLING,
        {
            I.START: error("already started"),
            I.PROVISIONAL: go(S.EARLY, "note_provisional"),
            I.SUCCESS: go(S.CONFIRMED, "adopt_dialog", "send_ack", "start_session"),
            I.FAILURE: go(S.DISCONNECTED, "fail"),
            I.CHALLENGE: go(S.CALLING, "send_invite"),
            I.TIMEOUT: go(S.DISCONNECTED, "fail_timeout"),
            I.TRANSPORT_ERROR: go(S.DISCONNECTED, "fail_transport"),
            I.BYE_RECEIVED: _NO_DIALOG,
            I.REINVITE: _NO_DIALOG,
            I.REQUEST: _NO_DIALOG,
            I.HANGUP: go(S.CANCEL_PENDING),
            I.SETUP_TIMEOUT: go(S.CANCEL_PENDING, "fail_setup_timeout"),
            I.ANSWER_REJECTED: error("no 2xx yet"),
            **_UAC_NEVER,
        },
    ),
    **_cells(
        S.EARLY,
        {
            I.START: error("already started"),
            I.PROVISIONAL: stay("note_provisional"),
            I.SUCCESS: go(S.CONFIRMED, "adopt_dialog", "send_ack", "start_session"),
            I.FAILURE: go(S.DISCONNECTED, "fail"),
            I.CHALLENGE: go(S.CALLING, "send_invite"),
            I.TIMEOUT: go(S.DISCONNECTED, "fail_timeout"),
            I.TRANSPORT_ERROR: go(S.DISCONNECTED, "fail_transport"),
            I.BYE_RECEIVED: _NO_DIALOG,
            I.REINVITE: _NO_DIALOG,
            I.REQUEST: _NO_DIALOG,
            I.HANGUP: go(S.CANCELLING, "send_cancel"),
            I.SETUP_TIMEOUT: go(S.CANCELLING, "send_cancel", "fail_setup_timeout"),
            I.ANSWER_REJECTED: error("no 2xx yet"),
            **_UAC_NEVER,
        },
    ),
    **_cells(
        S.CANCEL_PENDING,
        {
            **_CANCEL_WAIT,
            I.PROVISIONAL: go(S.CANCELLING, "note_provisional", "send_cancel"),
        },
    ),
    **_cells(
        S.CANCELLING,
        {
            **_CANCEL_WAIT,
            I.PROVISIONAL: ignore("the CANCEL is out; waiting for the final response"),
        },
    ),
    **_cells(
        S.CONFIRMED,
        {
            I.START: error("already started"),
            I.PROVISIONAL: _LATE,
            I.SUCCESS: stay("ack_again"),
            I.FAILURE: _LATE,
            I.CHALLENGE: _LATE,
            I.TIMEOUT: ignore("the INVITE transaction ends after its 2xx (Timer M)"),
            I.TRANSPORT_ERROR: ignore("the INVITE transaction ends after its 2xx"),
            I.BYE_RECEIVED: go(S.DISCONNECTED, "answer_bye", "end_remote_bye"),
            I.REINVITE: stay("answer_reinvite"),
            I.REQUEST: stay("answer_request"),
            I.HANGUP: go(S.DISCONNECTED, "send_bye", "end_local_bye"),
            I.SETUP_TIMEOUT: ignore("answered: the timer was cancelled"),
            I.ANSWER_REJECTED: go(S.DISCONNECTED, "send_bye", "fail_answer"),
            **_UAC_NEVER,
        },
    ),
    **_cells(
        S.DISCONNECTED,
        {
            I.START: error("a call is started once"),
            I.PROVISIONAL: _LATE,
            I.SUCCESS: stay("ack_again"),
            I.FAILURE: _LATE,
            I.CHALLENGE: _LATE,
            I.TIMEOUT: _LATE,
            I.TRANSPORT_ERROR: _LATE,
            I.BYE_RECEIVED: _NO_DIALOG,
            I.REINVITE: _NO_DIALOG,
            I.REQUEST: _NO_DIALOG,
            I.HANGUP: ignore("already over"),
            I.SETUP_TIMEOUT: ignore("already over"),
            I.ANSWER_REJECTED: ignore("already over"),
            **_UAC_NEVER,
        },
    ),
}

_UAC_ONLY = error("not an input of an incoming call")
_RESPONSE = ignore("a response to one of our in-dialog requests: nothing to do")

# Inputs the UAS never sees, or sees only as responses to its BYE.
_UAS_NEVER = {
    I.START: _UAC_ONLY,
    I.SETUP_TIMEOUT: _UAC_ONLY,
    I.ANSWER_REJECTED: _UAC_ONLY,
    I.CHALLENGE: _UAC_ONLY,
    I.PROVISIONAL: _RESPONSE,
    I.SUCCESS: _RESPONSE,
    I.FAILURE: _RESPONSE,
}

_UNANSWERED = {
    I.INVITE: error("the INVITE was taken already"),
    I.BAD_INVITE: error("the INVITE was taken already"),
    I.ANSWER: go(S.CONNECTING, "send_ok"),
    I.CANCEL_RECEIVED: go(S.DISCONNECTED, "reject_terminated", "end_cancelled"),
    I.BYE_RECEIVED: go(S.DISCONNECTED, "answer_bye", "reject_terminated", "end_remote_bye"),
    I.REINVITE: stay("refuse_500"),
    I.REQUEST: stay("answer_request"),
    I.ACK_RECEIVED: ignore("no 2xx sent: an ACK of ours to absorb is the transaction's"),
    I.ACK_TIMEOUT: error("no 2xx sent: no ACK timer"),
    I.TIMEOUT: error("no final response sent: no Timer H"),
    I.TRANSPORT_ERROR: go(S.DISCONNECTED, "end_transport"),
    I.HANGUP: go(S.DISCONNECTED, "decline", "end_rejected"),
    **_UAS_NEVER,
}

_ANSWERED = {
    I.INVITE: error("the INVITE was taken already"),
    I.BAD_INVITE: error("the INVITE was taken already"),
    I.RING: error("answered already"),
    I.ANSWER: error("answered already"),
    I.CANCEL_RECEIVED: ignore("9.2: a CANCEL after the final response has no effect"),
    I.BYE_RECEIVED: go(S.DISCONNECTED, "answer_bye", "end_remote_bye"),
    I.REINVITE: stay("answer_reinvite"),
    I.REQUEST: stay("answer_request"),
    I.TIMEOUT: ignore("a 2xx is retransmitted by us, not by the transaction"),
    I.TRANSPORT_ERROR: go(S.DISCONNECTED, "end_transport"),
    **_UAS_NEVER,
}

#: The incoming call (UAS, RFC 3261 13.3).
UAS_TABLE: Table = {
    **_all(S.CALLING, error("an incoming call is never CALLING")),
    **_all(S.CANCEL_PENDING, error("an incoming call never sends a CANCEL")),
    **_all(S.CANCELLING, error("an incoming call never sends a CANCEL")),
    **_cells(
        S.NULL,
        {
            I.INVITE: go(S.INCOMING, "accept_invite"),
            I.BAD_INVITE: go(S.DISCONNECTED, "reject", "end_failed"),
            I.HANGUP: go(S.DISCONNECTED, "decline", "end_rejected"),
            **{
                name: error("the INVITE is not taken yet")
                for name in CallInput
                if name not in (I.INVITE, I.BAD_INVITE, I.HANGUP, *_UAS_NEVER)
            },
            **_UAS_NEVER,
        },
    ),
    **_cells(S.INCOMING, {**_UNANSWERED, I.RING: go(S.EARLY, "send_ringing")}),
    **_cells(S.EARLY, {**_UNANSWERED, I.RING: error("rung already")}),
    **_cells(
        S.CONNECTING,
        {
            **_ANSWERED,
            I.ACK_RECEIVED: go(S.CONFIRMED, "confirm"),
            I.ACK_TIMEOUT: go(S.DISCONNECTED, "send_bye", "end_no_ack"),
            I.HANGUP: go(S.BYE_PENDING),
        },
    ),
    **_cells(
        S.BYE_PENDING,
        {
            **_ANSWERED,
            I.ACK_RECEIVED: go(S.DISCONNECTED, "confirm", "send_bye", "end_local_bye"),
            I.ACK_TIMEOUT: go(S.DISCONNECTED, "send_bye", "end_no_ack"),
            I.HANGUP: ignore("already hanging up: the BYE waits for the ACK"),
        },
    ),
    **_cells(
        S.CONFIRMED,
        {
            **_ANSWERED,
            I.ACK_RECEIVED: ignore("a retransmitted ACK"),
            I.ACK_TIMEOUT: ignore("ACKed: the timer was cancelled"),
            I.HANGUP: go(S.DISCONNECTED, "send_bye", "end_local_bye"),
        },
    ),
    **_cells(
        S.DISCONNECTED,
        {
            I.INVITE: error("a call takes one INVITE"),
            I.BAD_INVITE: error("a call takes one INVITE"),
            I.RING: ignore("over: the answer timer came late"),
            I.ANSWER: ignore("over: the answer timer came late"),
            I.CANCEL_RECEIVED: ignore("over"),
            I.BYE_RECEIVED: _NO_DIALOG,
            I.REINVITE: _NO_DIALOG,
            I.REQUEST: _NO_DIALOG,
            I.ACK_RECEIVED: ignore("over: a late ACK"),
            I.ACK_TIMEOUT: ignore("over"),
            I.TIMEOUT: ignore("over"),
            I.TRANSPORT_ERROR: ignore("over"),
            I.HANGUP: ignore("already over"),
            **_UAS_NEVER,
        },
    ),
}


def missing_rows(table: Table) -> list[tuple[CallState, CallInput]]:
    """Every (state, input) pair the table leaves out: none, for a complete table."""
    return _missing_rows(table, CallState, CallInput)


class CallMachine(Machine[CallState, CallInput]):
    """A call's state, from NULL, run by its role's table (see :class:`Machine`)."""

    def __init__(
        self,
        table: Table,
        outputs: object,
        *,
        on_transition: Callable[[CallState, CallInput, CallState], None] | None = None,
    ) -> None:
        super().__init__(table, CallState.NULL, outputs, on_transition=on_transition)
