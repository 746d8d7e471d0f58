"""The registration state machine: RFC 3261 section 10.2, one transition table.

States:

- ``IDLE``: made, nothing sent.
- ``REGISTERING``: the first REGISTER is out (with its digest and 423 rounds) [10.2, 22.2].
- ``REGISTERED``: a binding is granted; a refresh is scheduled before it lapses [10.2.1].
- ``REFRESHING``: a refresh REGISTER is out [10.2.1].
- ``LAPSED``: a refresh failed; the binding may lapse; a retry is scheduled.
- ``FAILED``: the first REGISTER failed (its code classifies the attempt).
- ``STOP_AFTER_FIRST``: stop() came while the first REGISTER was out: its Deferred has
  failed already; if the registrar grants it after all, the binding is removed at once.
- ``STOP_AFTER_REFRESH``: stop() came while a refresh was out: the binding is removed once
  that REGISTER is answered (sending Expires: 0 before would let a late refresh re-create it).
- ``UNREGISTERING``: the REGISTER with ``Expires: 0`` is out [10.2.2].
- ``STOPPED``: over.

Inputs: ``START``, ``STOP``, ``REFRESH_DUE`` (the refresh or retry timer), and the outcome of
the REGISTER in flight: ``SUCCESS`` (2xx), ``CHALLENGE`` (a 401/407 we can answer, 22.2),
``TOO_BRIEF`` (423 with a usable Min-Expires, 10.2.8), ``FAILURE`` (any other final response),
``TIMEOUT`` (Timer F: 408) and ``TRANSPORT_ERROR`` (503), as 8.1.3.1 has the UA treat them.

::

    state               input                            next                outputs
    IDLE                START                            REGISTERING         send_register
    IDLE                STOP                             STOPPED             stopped
    REGISTERING         SUCCESS                          REGISTERED          note_registered,
                                                                             arm_refresh
    REGISTERING         CHALLENGE/TOO_BRIEF              (stays)             resend_register
    REGISTERING         FAILURE/TIMEOUT/TRANSPORT_ERROR  FAILED              fail_first
    REGISTERING         STOP                             STOP_AFTER_FIRST    fail_first_stopped
    REGISTERED/LAPSED   REFRESH_DUE                      REFRESHING          send_register
    REGISTERED/LAPSED   STOP                             UNREGISTERING       cancel_refresh,
                                                                             send_unregister
    REFRESHING          SUCCESS                          REGISTERED          refreshed, arm_refresh
    REFRESHING          CHALLENGE/TOO_BRIEF              (stays)             resend_register
    REFRESHING          FAILURE/TIMEOUT/TRANSPORT_ERROR  LAPSED              refresh_failed,
                                                                             arm_retry
    REFRESHING          STOP                             STOP_AFTER_REFRESH  .
    STOP_AFTER_FIRST    SUCCESS                          UNREGISTERING       send_unregister
    STOP_AFTER_FIRST    CHALLENGE/TOO_BRIEF/FAILURE      STOPPED             stopped
    STOP_AFTER_FIRST    TIMEOUT/TRANSPORT_ERROR          STOPPED             stopped
    STOP_AFTER_REFRESH  SUCCESS/CHALLENGE/TOO_BRIEF      UNREGISTERING       send_unregister
    STOP_AFTER_REFRESH  FAILURE                          UNREGISTERING       send_unregister
    STOP_AFTER_REFRESH  TIMEOUT/TRANSPORT_ERROR          STOPPED             stopped
    UNREGISTERING       SUCCESS/FAILURE/TOO_BRIEF        STOPPED             stopped
    UNREGISTERING       TIMEOUT/TRANSPORT_ERROR          STOPPED             stopped
    UNREGISTERING       CHALLENGE                        (stays)             resend_unregister
    FAILED              STOP                             STOPPED             stopped
    STOPPED             START                            (stays)             fail_first_stopped

Every other pair is an explicit ignore (a late response, a second stop()) or error (START
twice, a response with nothing out); :func:`missing_rows` is empty, and the tests check it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from callmeter.sip.state_table import Machine, Row, error, go, ignore, stay
from callmeter.sip.state_table import missing_rows as _missing_rows

__all__ = [
    "REGISTRATION_TABLE",
    "RegistrationInput",
    "RegistrationMachine",
    "RegistrationState",
    "missing_rows",
]


class RegistrationState(enum.Enum):
    IDLE = "idle"
    REGISTERING = "registering"
    REGISTERED = "registered"
    REFRESHING = "refreshing"
    LAPSED = "lapsed"
    FAILED = "failed"
    STOP_AFTER_FIRST = "stop after the first REGISTER"
    STOP_AFTER_REFRESH = "stop after the refresh"
    UNREGISTERING = "unregistering"
    STOPPED = "stopped"


class RegistrationInput(enum.Enum):
    START = "start"
    STOP = "stop"
    REFRESH_DUE = "refresh due"
    SUCCESS = "2xx"
    CHALLENGE = "401/407 we can answer"
    TOO_BRIEF = "423 with Min-Expires"
    FAILURE = "other final response"
    TIMEOUT = "timeout"
    TRANSPORT_ERROR = "transport error"


R = RegistrationState
In = RegistrationInput
Table = Mapping[tuple[RegistrationState, RegistrationInput], Row[RegistrationState]]

_OUTCOMES = (In.SUCCESS, In.CHALLENGE, In.TOO_BRIEF, In.FAILURE, In.TIMEOUT, In.TRANSPORT_ERROR)
_NOTHING_OUT = error("no REGISTER is out")
_NO_TIMER = error("no refresh is scheduled")
_LATE = ignore("a late answer to a REGISTER we no longer wait for")


def _rows(
    state: RegistrationState, rows: Mapping[RegistrationInput, Row[RegistrationState]]
) -> dict[tuple[RegistrationState, RegistrationInput], Row[RegistrationState]]:
    return {(state, name): row for name, row in rows.items()}


_BOUND = {
    In.START: error("already started"),
    In.REFRESH_DUE: go(R.REFRESHING, "send_register"),
    In.STOP: go(R.UNREGISTERING, "cancel_refresh", "send_unregister"),
    **dict.fromkeys(_OUTCOMES, _NOTHING_OUT),
}

_IN_FLIGHT = {
    In.START: error("already started"),
    In.REFRESH_DUE: _NO_TIMER,
}

#: The registration (RFC 3261 10.2).
REGISTRATION_TABLE: Table = {
    **_rows(
        R.IDLE,
        {
            In.START: go(R.REGISTERING, "send_register"),
            In.STOP: go(R.STOPPED, "stopped"),
            In.REFRESH_DUE: _NO_TIMER,
            **dict.fromkeys(_OUTCOMES, _NOTHING_OUT),
        },
    ),
    **_rows(
        R.REGISTERING,
        {
            **_IN_FLIGHT,
            In.SUCCESS: go(R.REGISTERED, "note_registered", "arm_refresh"),
            In.CHALLENGE: stay("resend_register"),
            In.TOO_BRIEF: stay("resend_register"),
            In.FAILURE: go(R.FAILED, "fail_first"),
            In.TIMEOUT: go(R.FAILED, "fail_first"),
            In.TRANSPORT_ERROR: go(R.FAILED, "fail_first"),
            In.STOP: go(R.STOP_AFTER_FIRST, "fail_first_stopped"),
        },
    ),
    **_rows(R.REGISTERED, _BOUND),
    **_rows(R.LAPSED, _BOUND),
    **_rows(
        R.REFRESHING,
        {
            **_IN_FLIGHT,
            In.SUCCESS: go(R.REGISTERED, "refreshed", "arm_refresh"),
            In.CHALLENGE: stay("resend_register"),
            In.TOO_BRIEF: stay("resend_register"),
            In.FAILURE: go(R.LAPSED, "refresh_failed", "arm_retry"),
            In.TIMEOUT: go(R.LAPSED, "refresh_failed", "arm_retry"),
            In.TRANSPORT_ERROR: go(R.LAPSED, "refresh_failed", "arm_retry"),
            In.STOP: go(R.STOP_AFTER_REFRESH),
        },
    ),
    **_rows(
        R.STOP_AFTER_FIRST,
        {
            **_IN_FLIGHT,
            In.SUCCESS: go(R.UNREGISTERING, "send_unregister"),
            In.CHALLENGE: go(R.STOPPED, "stopped"),  # nothing bound: no need to go on
            In.TOO_BRIEF: go(R.STOPPED, "stopped"),
            In.FAILURE: go(R.STOPPED, "stopped"),
            In.TIMEOUT: go(R.STOPPED, "stopped"),
            In.TRANSPORT_ERROR: go(R.STOPPED, "stopped"),
            In.STOP: ignore("already stopping"),
        },
    ),
    **_rows(
        R.STOP_AFTER_REFRESH,
        {
            **_IN_FLIGHT,
            In.SUCCESS: go(R.UNREGISTERING, "send_unregister"),
            In.CHALLENGE: go(R.UNREGISTERING, "send_unregister"),  # the old binding is there
            In.TOO_BRIEF: go(R.UNREGISTERING, "send_unregister"),
            In.FAILURE: go(R.UNREGISTERING, "send_unregister"),
            In.TIMEOUT: go(R.STOPPED, "stopped"),  # the registrar is out of reach
            In.TRANSPORT_ERROR: go(R.STOPPED, "stopped"),
            In.STOP: ignore("already stopping"),
        },
    ),
    **_rows(
        R.UNREGISTERING,
        {
            **_IN_FLIGHT,
            In.SUCCESS: go(R.STOPPED, "stopped"),
            In.CHALLENGE: stay("resend_unregister"),
            In.TOO_BRIEF: go(R.STOPPED, "stopped"),  # no 423 for Expires: 0; give up
            In.FAILURE: go(R.STOPPED, "stopped"),
            In.TIMEOUT: go(R.STOPPED, "stopped"),
            In.TRANSPORT_ERROR: go(R.STOPPED, "stopped"),
            In.STOP: ignore("already stopping"),
        },
    ),
    **_rows(
        R.FAILED,
        {
            In.START: error("a registration starts once"),
            In.STOP: go(R.STOPPED, "stopped"),
            In.REFRESH_DUE: _NO_TIMER,
            **dict.fromkeys(_OUTCOMES, _LATE),
        },
    ),
    **_rows(
        R.STOPPED,
        {
            In.START: stay("fail_first_stopped"),  # stopped before it started
            In.STOP: ignore("stopped already"),
            In.REFRESH_DUE: ignore("stopped: the timer came late"),
            **dict.fromkeys(_OUTCOMES, _LATE),
        },
    ),
}


def missing_rows(table: Table) -> list[tuple[RegistrationState, RegistrationInput]]:
    """Every (state, input) pair the table leaves out: none, for a complete table."""
    return _missing_rows(table, RegistrationState, RegistrationInput)


class RegistrationMachine(Machine[RegistrationState, RegistrationInput]):
    """A registration's state, from IDLE, run by :data:`REGISTRATION_TABLE`."""

    def __init__(self, outputs: object, table: Table = REGISTRATION_TABLE) -> None:
        super().__init__(table, RegistrationState.IDLE, outputs)
