"""The test plan: validation and expansion into endpoints (docs/plan.md documents every field).

A plan arrives as JSON (a file for ``callmeter run``, an assignment from the gateway).  It is
validated completely before anything is sent: :func:`parse_plan` returns a frozen :class:`Plan`
or raises :class:`PlanError`, which lists every problem as ``field.path: what is wrong`` (for
example ``groups[1].count: must be 1..500``).  User and password patterns use Python format
syntax with one field, ``{i}`` (the endpoint's index in its group, from 0), and any format spec
(``{i:03d}``); nothing else can be reached through them.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from callmeter.sip.sdp import CODECS as SDP_CODECS

__all__ = [
    "AUDIO_CODECS",
    "VIDEO_CODECS",
    "CallSpec",
    "Group",
    "PassCriteria",
    "Plan",
    "PlanError",
    "Registrar",
    "format_pattern",
    "parse_plan",
]

TRANSPORTS = ("udp", "tcp", "tls")
ROLES = ("caller", "callee")
AUDIO_CODECS = ("PCMU", "PCMA", "G722", "opus")
VIDEO_CODECS = ("VP8", "H264")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SIP_URI_RE = re.compile(r"sips?:[^\s<>\"]+")
HOST_RE = re.compile(r"[A-Za-z0-9.:\[\]-]{1,255}")
MAX_DURATION_S = 7 * 24 * 3600
PASS_KEYS = {
    "setup_time_ms_p95_max": "max",
    "pdd_ms_p95_max": "max",
    "register_time_ms_p95_max": "max",
    "loss_pct_max": "max",
    "jitter_ms_p95_max": "max",
    "rtt_ms_p95_max": "max",
    "mos_min": "min",
    "call_success_pct_min": "min",
    "register_success_pct_min": "min",
    "no_media_max": "max",
}


class PlanError(ValueError):
    """A plan that cannot run; ``problems`` lists each as ``path: message``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Registrar:
    name: str
    host: str
    port: int
    transport: str
    domain: str
    outbound_proxy: str | None = None
    register: bool = True
    expires: int = 3600


@dataclass(frozen=True)
class CallSpec:
    """What a caller does: call ``to`` (a group name or a SIP URI) at ``rate_per_s`` calls per
    second for the group, each call lasting ``duration_s``; ``calls`` calls per caller (None:
    call again after ``pause_s`` until the test ends)."""

    to: str
    duration_s: float
    rate_per_s: float
    calls: int | None = 1
    pause_s: float = 1.0
    setup_timeout_s: float = 32.0

    @property
    def to_group(self) -> bool:
        return not self.to.startswith(("sip:", "sips:"))


@dataclass(frozen=True)
class Group:
    name: str
    role: str
    count: int
    registrar: str | None
    user: str
    password: str | None
    codecs: tuple[str, ...]
    video: tuple[str, ...] = ()
    media: str | None = None
    video_media: str | None = None
    answer_delay_s: float = 0.0
    call: CallSpec | None = None
    transport: str = "udp"

    def user_of(self, index: int) -> str:
        return format_pattern(self.user, index)

    def password_of(self, index: int) -> str | None:
        return None if self.password is None else format_pattern(self.password, index)


@dataclass(frozen=True)
class PassCriteria:
    """Limits that decide pass/fail; with none given, every attempt must succeed.

    ``media_required`` (default): every stream that should receive media received it to the
    end, unless ``no_media_max`` in ``limits`` allows some streams without it.
    """

    limits: Mapping[str, float] = field(default_factory=dict)
    media_required: bool = True

    @property
    def default(self) -> bool:
        return not self.limits


@dataclass(frozen=True)
class Plan:
    name: str
    duration_s: float
    ramp_up_s: float
    registrars: Mapping[str, Registrar]
    groups: tuple[Group, ...]
    passing: PassCriteria
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)
    #: The E-model's assumption for every audio stream we receive: the endpoint conceals
    #: lost packets (G.113 Bpl with PLC, the default) or plays silence ("emodel": {"plc":
    #: false}).
    emodel_plc: bool = True

    @property
    def endpoints(self) -> int:
        return sum(group.count for group in self.groups)

    def group(self, name: str) -> Group:
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(name)


def format_pattern(pattern: str, index: int) -> str:
    """``pattern`` with ``{i}`` replaced by ``index`` (format specs allowed, nothing else)."""
    return pattern.format(i=index)


def parse_plan(data: Any, *, max_endpoints: int) -> Plan:
    """Validate ``data`` (a decoded JSON object) into a :class:`Plan`; PlanError lists problems."""
    check = _Checker()
    if not isinstance(data, dict):
        raise PlanError(["plan: must be a JSON object"])
    check.unknown(
        data,
        "",
        {
            "name",
            "duration_s",
            "ramp_up_s",
            "registrars",
            "groups",
            "pass",
            "description",
            "emodel",
        },
    )
    name = (
        check.string(
            data,
            "name",
            "name",
            required=True,
            pattern=NAME_RE,
            what="1-64 letters, digits, '_', '.', '-'",
        )
        or "plan"
    )
    duration = (
        check.number(data, "duration_s", "duration_s", low=1, high=MAX_DURATION_S, required=True)
        or 1.0
    )
    ramp_up = check.number(data, "ramp_up_s", "ramp_up_s", low=0, high=MAX_DURATION_S, default=0.0)
    assert ramp_up is not None
    if ramp_up > duration:
        check.problem("ramp_up_s", "must not exceed duration_s")
    registrars = _registrars(check, data.get("registrars", {}))
    groups = _groups(check, data.get("groups"), registrars, duration)
    total = sum(group.count for group in groups)
    if total > max_endpoints:
        check.problem(
            "groups", f"{total} endpoints in all: must be at most MAX_ENDPOINTS ({max_endpoints})"
        )
    for index, group in enumerate(groups):
        if group.count > max_endpoints:
            check.problem(f"groups[{index}].count", f"must be 1..{max_endpoints}")
    passing = _pass(check, data.get("pass"))
    emodel_plc = _emodel(check, data.get("emodel", {}))
    check.done()
    return Plan(
        name, duration, ramp_up, registrars, tuple(groups), passing, raw=data, emodel_plc=emodel_plc
    )


# -- sections ------------------------------------------------------------------------------


def _registrars(check: _Checker, value: Any) -> dict[str, Registrar]:
    if not isinstance(value, dict):
        check.problem("registrars", "must be an object of name -> registrar")
        return {}
    found: dict[str, Registrar] = {}
    for name, spec in value.items():
        path = f"registrars.{name}"
        if not NAME_RE.fullmatch(str(name)):
            check.problem(path, "registrar names are 1-64 letters, digits, '_', '.', '-'")
            continue
        if not isinstance(spec, dict):
            check.problem(path, "must be an object")
            continue
        check.unknown(
            spec,
            path,
            {"host", "port", "transport", "domain", "outbound_proxy", "register", "expires"},
        )
        host = (
            check.string(
                spec,
                "host",
                f"{path}.host",
                required=True,
                pattern=HOST_RE,
                what="a host name or IP address",
            )
            or "invalid"
        )
        transport = check.choice(spec, "transport", f"{path}.transport", TRANSPORTS, "udp")
        port = check.integer(
            spec,
            "port",
            f"{path}.port",
            low=1,
            high=65535,
            default=5061 if transport == "tls" else 5060,
        )
        domain = (
            check.string(spec, "domain", f"{path}.domain", pattern=HOST_RE, what="a SIP domain")
            or host
        )
        proxy = check.string(
            spec,
            "outbound_proxy",
            f"{path}.outbound_proxy",
            pattern=re.compile(r"(sips?:)?[A-Za-z0-9.:\[\]-]+(;[^\s]*)?"),
            what="host[:port] or a SIP URI",
        )
        register = check.boolean(spec, "register", f"{path}.register", True)
        expires = check.integer(
            spec, "expires", f"{path}.expires", low=10, high=86400, default=3600
        )
        assert port is not None and expires is not None
        found[str(name)] = Registrar(
            str(name), host, port, transport, domain, proxy, register, expires
        )
    return found


def _groups(
    check: _Checker, value: Any, registrars: Mapping[str, Registrar], duration: float
) -> list[Group]:
    if not isinstance(value, list) or not value:
        check.problem("groups", "must be a non-empty list of endpoint groups")
        return []
    groups: list[Group] = []
    names: set[str] = set()
    for index, spec in enumerate(value):
        path = f"groups[{index}]"
        if not isinstance(spec, dict):
            check.problem(path, "must be an object")
            continue
        check.unknown(
            spec,
            path,
            {
                "name",
                "role",
                "count",
                "registrar",
                "user",
                "password",
                "codecs",
                "video",
                "media",
                "video_media",
                "answer_delay_s",
                "call",
                "transport",
            },
        )
        name = (
            check.string(
                spec,
                "name",
                f"{path}.name",
                required=True,
                pattern=NAME_RE,
                what="1-64 letters, digits, '_', '.', '-'",
            )
            or f"group{index}"
        )
        if name in names:
            check.problem(f"{path}.name", f"duplicate group name {name!r}")
        names.add(name)
        role = check.choice(spec, "role", f"{path}.role", ROLES, None)
        count = (
            check.integer(spec, "count", f"{path}.count", low=1, high=1_000_000, required=True) or 1
        )
        registrar = check.string(spec, "registrar", f"{path}.registrar")
        if registrar is not None and registrar not in registrars:
            known = ", ".join(sorted(registrars)) or "none defined"
            check.problem(f"{path}.registrar", f"unknown registrar {registrar!r} ({known})")
        user = check.string(spec, "user", f"{path}.user") or f"{name}-{{i}}"
        check.pattern(user, f"{path}.user")
        password = check.string(spec, "password", f"{path}.password")
        if password is not None:
            check.pattern(password, f"{path}.password")
        if count > 1 and format_pattern_safe(user, 0) == format_pattern_safe(user, 1):
            check.problem(f"{path}.user", "must contain {i} so that endpoints differ")
        codecs = check.codecs(spec, "codecs", f"{path}.codecs", AUDIO_CODECS, ("PCMU", "PCMA"))
        video = check.codecs(spec, "video", f"{path}.video", VIDEO_CODECS, (), allow_empty=True)
        media = check.url(spec, "media", f"{path}.media")
        video_media = check.url(spec, "video_media", f"{path}.video_media")
        answer_delay = check.number(
            spec, "answer_delay_s", f"{path}.answer_delay_s", low=0, high=300, default=0.0
        )
        chosen = registrars.get(registrar) if registrar is not None else None
        default_transport = chosen.transport if chosen is not None else "udp"
        transport = check.choice(
            spec, "transport", f"{path}.transport", TRANSPORTS, default_transport
        )
        call = _call(check, spec.get("call"), f"{path}.call", duration) if "call" in spec else None
        if role == "caller" and call is None:
            check.problem(f"{path}.call", "a caller group needs a call section")
        if role == "callee" and call is not None:
            check.problem(f"{path}.call", "only caller groups call")
        assert answer_delay is not None
        groups.append(
            Group(
                name,
                role or "caller",
                count,
                registrar,
                user,
                password,
                codecs,
                video,
                media,
                video_media,
                answer_delay,
                call,
                transport,
            )
        )
    by_name = {group.name: group for group in groups}
    for index, group in enumerate(groups):
        if group.call is not None and group.call.to_group:
            target = by_name.get(group.call.to)
            if target is None:
                check.problem(
                    f"groups[{index}].call.to",
                    f"{group.call.to!r} is neither a group name nor a sip: URI",
                )
            elif target.role != "callee":
                check.problem(
                    f"groups[{index}].call.to", f"group {target.name!r} is not a callee group"
                )
    return groups


def _call(check: _Checker, spec: Any, path: str, duration: float) -> CallSpec | None:
    if not isinstance(spec, dict):
        check.problem(path, "must be an object")
        return None
    check.unknown(
        spec, path, {"to", "duration_s", "rate_per_s", "calls", "pause_s", "setup_timeout_s"}
    )
    to = check.string(spec, "to", f"{path}.to", required=True) or "invalid"
    if to.startswith(("sip:", "sips:")) and not SIP_URI_RE.fullmatch(to):
        check.problem(f"{path}.to", "not a valid SIP URI")
    call_duration = check.number(
        spec,
        "duration_s",
        f"{path}.duration_s",
        low=0.1,
        high=MAX_DURATION_S,
        default=min(30.0, duration),
    )
    rate = check.number(spec, "rate_per_s", f"{path}.rate_per_s", low=0.01, high=1000, default=10.0)
    calls = check.integer(
        spec, "calls", f"{path}.calls", low=1, high=1_000_000, default=1, nullable=True
    )
    pause = check.number(spec, "pause_s", f"{path}.pause_s", low=0, high=3600, default=1.0)
    timeout = check.number(
        spec, "setup_timeout_s", f"{path}.setup_timeout_s", low=1, high=300, default=32.0
    )
    assert call_duration is not None and rate is not None and pause is not None
    assert timeout is not None
    return CallSpec(to, call_duration, rate, calls, pause, timeout)


def _pass(check: _Checker, spec: Any) -> PassCriteria:
    if spec is None:
        return PassCriteria()
    if not isinstance(spec, dict):
        check.problem("pass", "must be an object of criteria")
        return PassCriteria()
    check.unknown(spec, "pass", set(PASS_KEYS) | {"media_required"})
    limits: dict[str, float] = {}
    for key in PASS_KEYS:
        if key in spec:
            value = check.number(spec, key, f"pass.{key}", low=0, high=1e9)
            if value is not None:
                limits[key] = value
    media_required = check.boolean(spec, "media_required", "pass.media_required", True)
    if not media_required and "no_media_max" in limits:
        check.problem("pass.no_media_max", "contradicts media_required: false (give one)")
    return PassCriteria(limits, media_required)


def _emodel(check: _Checker, spec: Any) -> bool:
    """The E-model section: ``{"plc": true|false}``; returns the PLC assumption."""
    if not isinstance(spec, dict):
        check.problem("emodel", 'must be an object such as {"plc": false}')
        return True
    check.unknown(spec, "emodel", {"plc"})
    return check.boolean(spec, "plc", "emodel.plc", True)


def format_pattern_safe(pattern: str, index: int) -> str | None:
    try:
        return format_pattern(pattern, index)
    except (ValueError, KeyError, IndexError, AttributeError):
        return None


class _Checker:
    """Collects problems instead of stopping at the first one."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def done(self) -> None:
        if self.problems:
            raise PlanError(self.problems)

    def unknown(self, spec: Mapping[str, Any], path: str, allowed: set[str]) -> None:
        for key in spec:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                self.problem(
                    where,
                    "unknown field (see docs/plan.md, installed as "
                    "/usr/share/doc/callmeter-worker/plan.md)",
                )

    def string(
        self,
        spec: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        pattern: re.Pattern[str] | None = None,
        what: str = "",
    ) -> str | None:
        if key not in spec or spec[key] is None:
            if required:
                self.problem(path, "required")
            return None
        value = spec[key]
        if not isinstance(value, str) or not value:
            self.problem(path, "must be a non-empty string")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.problem(path, f"must be {what}")
            return None
        return value

    def number(
        self,
        spec: Mapping[str, Any],
        key: str,
        path: str,
        *,
        low: float,
        high: float,
        default: float | None = None,
        required: bool = False,
    ) -> float | None:
        if key not in spec:
            if required:
                self.problem(path, "required")
            return default
        value = spec[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            self.problem(path, "must be a number")
            return default
        if not low <= value <= high:
            self.problem(path, f"must be {_fmt(low)}..{_fmt(high)}")
            return default
        return float(value)

    def integer(
        self,
        spec: Mapping[str, Any],
        key: str,
        path: str,
        *,
        low: int,
        high: int,
        default: int | None = None,
        required: bool = False,
        nullable: bool = False,
    ) -> int | None:
        if key not in spec:
            if required:
                self.problem(path, "required")
            return default
        value = spec[key]
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, "must be an integer")
            return default
        if not low <= value <= high:
            self.problem(path, f"must be {low}..{high}")
            return default
        return value

    def boolean(self, spec: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = spec.get(key, default)
        if not isinstance(value, bool):
            self.problem(path, "must be true or false")
            return default
        return value

    def choice(
        self,
        spec: Mapping[str, Any],
        key: str,
        path: str,
        choices: Sequence[str],
        default: str | None,
    ) -> str:
        if key not in spec:
            if default is None:
                self.problem(path, "required: one of " + ", ".join(choices))
                return choices[0]
            return default
        value = spec[key]
        if value not in choices:
            self.problem(path, "must be one of " + ", ".join(choices))
            return default or choices[0]
        return str(value)

    def codecs(
        self,
        spec: Mapping[str, Any],
        key: str,
        path: str,
        allowed: Sequence[str],
        default: tuple[str, ...],
        allow_empty: bool = False,
    ) -> tuple[str, ...]:
        if key not in spec:
            return default
        value = spec[key]
        if not isinstance(value, list) or (not value and not allow_empty):
            self.problem(path, "must be a list of codec names")
            return default
        names: list[str] = []
        lowered = {name.lower(): name for name in allowed}
        for position, item in enumerate(value):
            name = lowered.get(str(item).lower()) if isinstance(item, str) else None
            if name is None or name.lower() not in {c.lower() for c in SDP_CODECS}:
                self.problem(f"{path}[{position}]", "must be one of " + ", ".join(allowed))
                continue
            if name in names:
                self.problem(f"{path}[{position}]", f"{name} is listed twice")
                continue
            names.append(name)
        return tuple(names)

    def url(self, spec: Mapping[str, Any], key: str, path: str) -> str | None:
        value = self.string(spec, key, path)
        if value is not None and not value.startswith(("http://", "https://", "file://")):
            self.problem(path, "must be an http://, https:// or file:// URL")
            return None
        return value

    def pattern(self, value: str, path: str) -> None:
        """Only ``{i}`` with an optional format spec may appear between braces.

        The messages never quote the pattern: a password pattern is a secret.
        """
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError:
            self.problem(path, "invalid pattern: unbalanced braces (write {{ and }} for a brace)")
            return
        for _, field_name, spec, conversion in parsed:
            if field_name is None:
                continue
            if field_name != "i" or conversion is not None:
                self.problem(path, "only {i} (with a format spec) may appear between braces")
                return
            try:
                format(0, spec or "")
            except ValueError:
                self.problem(path, "invalid format spec for {i} (e.g. {i:03d})")
                return


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
