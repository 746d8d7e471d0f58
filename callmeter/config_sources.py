"""Where the service's settings come from, read the way systemd reads them (`callmeter config`).

callmeter-worker.service gets its environment from systemd, not from a shell:

* the unit's ``EnvironmentFile=-/etc/callmeter/worker.env``, parsed by the rules of
  systemd.exec(5): ``KEY=VALUE`` lines, ``#``/``;`` comments, single and double quotes,
  backslash escapes, no ``export`` and no shell expansion;
* the drop-ins ``/etc/systemd/system/callmeter-worker.service.d/*.conf`` (``systemctl edit``),
  in file-name order: their ``Environment=`` (overridden by every environment file, as systemd
  does), ``EnvironmentFile=`` (read after the unit's; an empty one drops the unit's) and
  ``LoadCredential=worker_token:PATH`` (the token, as ``$CREDENTIALS_DIRECTORY/worker_token``).

:func:`gather` reads those files and merges the process environment over them (an operator's
``LOG_LEVEL=debug callmeter config`` shows what that value would do), recording where every
value came from; values from the shell are labelled :data:`SHELL`, because the service does not
see them.  :func:`render` prints the table of ``callmeter config``.  All paths are parameters:
the unit tests never read the real /etc.

Secrets: no function here prints a value read from a file.  Notes name variables and line
numbers only; the token is shown by :meth:`callmeter.config.Config.describe`, masked.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from callmeter.config import CREDENTIAL_NAME, VARIABLES, Config

__all__ = [
    "CREDSTORE_DIRS",
    "DEFAULT",
    "DROPIN_DIR",
    "ENV_FILE",
    "SHELL",
    "EnvFile",
    "SourceError",
    "Sources",
    "gather",
    "parse_env_file",
    "render",
    "render_sources",
]

ENV_FILE = "/etc/callmeter/worker.env"
"""The unit's ``EnvironmentFile=`` (with ``-``: an absent file is fine)."""
DROPIN_DIR = "/etc/systemd/system/callmeter-worker.service.d"
"""Where ``systemctl edit callmeter-worker`` writes its drop-ins."""
CREDSTORE_DIRS = (
    "/etc/credstore",
    "/run/credstore",
    "/usr/local/lib/credstore",
    "/usr/lib/credstore",
)
"""Where systemd looks for a ``LoadCredential=`` whose path is relative (systemd.exec(5))."""

DEFAULT = "default"
SHELL = "environment (your shell: the service does not see it)"
"""The source of a value that only the process running `callmeter config` has."""

KNOWN = frozenset(VARIABLES) | {"WORKER_TOKEN_FILE", "https_proxy", "no_proxy"}
"""The variables the worker reads (config.load_config)."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # systemd's env_name_is_valid: ASCII only
_EXPORT = re.compile(r"export\s+([A-Za-z_][A-Za-z0-9_]*)\Z")
_SUDO = "systemd reads it as root: run `sudo callmeter config`"


class SourceError(Exception):
    """A source that cannot be read or that systemd would refuse; ``str()`` is one line."""


# -- EnvironmentFile= ------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvFile:
    """One environment file as systemd reads it: the last value of every valid name wins."""

    path: str
    values: dict[str, str]
    lines: dict[str, int]
    """The line each value starts on."""
    notes: list[str] = field(default_factory=list)
    """Lines systemd ignores, names set twice, names the worker does not know."""


def parse_env_file(data: bytes, path: str) -> EnvFile:
    """Parse ``data`` like systemd's ``load_env_file()`` (src/basic/env-file.c, systemd >= 254).

    Raises :class:`SourceError` when a name or value is not UTF-8: systemd then fails on the
    whole file, and for ``EnvironmentFile=-...`` ignores it silently.
    """
    text = data.decode("utf-8", "surrogateescape")
    notes: list[str] = []
    if "\0" in text:
        # systemd reads the file as a C string: nothing after a NUL byte exists for it.
        text = text[: text.index("\0")]
        notes.append(f"{path}: a NUL byte ends the file for systemd; the rest is ignored")
    pairs = _env_file_pairs(text, path, notes)

    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    for key, value, line in pairs:
        if _not_utf8(key) or _not_utf8(value):
            raise SourceError(
                f"{path} line {line}: not UTF-8 text; systemd ignores the whole file, "
                "so the service would start without any of its settings"
            )
        if not _NAME.match(key):
            export = _EXPORT.match(key)
            if export:
                notes.append(
                    f"{path} line {line}: 'export {export.group(1)}=' is not understood "
                    "(no 'export' in this file); systemd ignores the line"
                )
            else:
                notes.append(
                    f"{path} line {line}: the name before '=' is not a variable name "
                    "(ASCII letters, digits, _); systemd ignores the line"
                )
            continue
        if key in values:
            notes.append(
                f"{path}: {key} is set on lines {lines[key]} and {line}; line {line} counts"
            )
        elif key not in KNOWN:
            notes.append(f"{path} line {line}: {key} is not a callmeter variable (a typo?)")
        values[key] = value
        lines[key] = line
    return EnvFile(path, values, lines, notes)


def _not_utf8(text: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in text)


def _env_file_pairs(text: str, path: str, notes: list[str]) -> list[tuple[str, str, int]]:
    """The state machine of systemd's parse_env_file_internal(), character for character."""
    whitespace, newline = " \t\n\r", "\n\r"
    pairs: list[tuple[str, str, int]] = []
    state = "PRE_KEY"
    key: list[str] = []
    value: list[str] = []
    key_ws: int | None = None  # where trailing whitespace of the key starts
    value_ws: int | None = None  # where trailing whitespace of an unquoted value starts
    line = 1  # the line of the current character
    start = 1  # the line the current assignment started on

    def push(strip_value: bool) -> None:
        k = "".join(key[:key_ws] if key_ws is not None else key)
        v = "".join(value[:value_ws] if strip_value and value_ws is not None else value)
        pairs.append((k, v, start))

    for i, c in enumerate(text):
        if state == "PRE_KEY":
            if c in "#;":
                state = "COMMENT"
            elif c not in whitespace:
                state, key, key_ws, start = "KEY", [c], None, line
        elif state == "KEY":
            if c in newline:
                notes.append(f"{path} line {start}: no '=' on the line; systemd ignores it")
                state = "PRE_KEY"
            elif c == "=":
                state, value, value_ws = "PRE_VALUE", [], None
            else:
                if c not in whitespace:
                    key_ws = None
                elif key_ws is None:
                    key_ws = len(key)
                key.append(c)
        elif state == "PRE_VALUE":
            if c in newline:
                push(strip_value=False)
                state = "PRE_KEY"
            elif c == "'":
                state = "SINGLE_QUOTE"
            elif c == '"':
                state = "DOUBLE_QUOTE"
            elif c == "\\":
                state = "VALUE_ESCAPE"
            elif c not in whitespace:
                state = "VALUE"
                value.append(c)
        elif state == "VALUE":
            if c in newline:
                push(strip_value=True)
                state = "PRE_KEY"
            elif c == "\\":
                state, value_ws = "VALUE_ESCAPE", None
            else:
                if c not in whitespace:
                    value_ws = None
                elif value_ws is None:
                    value_ws = len(value)
                value.append(c)
        elif state == "VALUE_ESCAPE":
            state = "VALUE"
            if c not in newline:  # a backslash-newline continues the line
                value.append(c)
        elif state == "SINGLE_QUOTE":
            if c == "'":
                state = "PRE_VALUE"
            else:
                value.append(c)
        elif state == "DOUBLE_QUOTE":
            if c == '"':
                state = "PRE_VALUE"
            elif c == "\\":
                state = "DOUBLE_QUOTE_ESCAPE"
            else:
                value.append(c)
        elif state == "DOUBLE_QUOTE_ESCAPE":
            state = "DOUBLE_QUOTE"
            if c in '"\\`$':
                value.append(c)
            elif c != "\n":
                value += ["\\", c]
        elif state == "COMMENT":
            if c == "\\":
                state = "COMMENT_ESCAPE"
            elif c in newline:
                state = "PRE_KEY"
        elif state == "COMMENT_ESCAPE":
            if c in newline:
                state = "PRE_KEY"
                following = text[i + 1 :].split("\n", 1)[0].strip()
                if following and following[0] not in "#;":
                    notes.append(
                        f"{path} line {line}: a comment ends with '\\': systemd 254 and later "
                        f"read line {line + 1} as a setting, older ones (Debian 12 has 252) "
                        "as part of the comment"
                    )
            else:
                state = "COMMENT"
        if c == "\n":
            line += 1

    if state in ("PRE_VALUE", "VALUE", "VALUE_ESCAPE", "SINGLE_QUOTE", "DOUBLE_QUOTE"):
        push(strip_value=state == "VALUE")
    elif state == "DOUBLE_QUOTE_ESCAPE":
        push(strip_value=False)
    elif state == "KEY":
        notes.append(f"{path} line {start}: no '=' on the line; systemd ignores it")
    return pairs


# -- the unit's drop-ins ---------------------------------------------------------------------


@dataclass
class _Unit:
    """What the drop-ins change: ``Environment=``, ``EnvironmentFile=``, the token credential."""

    environment: dict[str, tuple[str, str]] = field(default_factory=dict)
    """name -> (value, drop-in path)"""
    environment_files: list[tuple[str, str]] = field(default_factory=list)
    """(``EnvironmentFile=`` value, where it is set)"""
    credential: tuple[str, str] | None = None
    """(the ``LoadCredential=worker_token:`` path as written, drop-in path)"""
    notes: list[str] = field(default_factory=list)
    dropins: list[str] = field(default_factory=list)


def _unit_lines(text: str) -> Iterable[tuple[int, str]]:
    """(line number, logical line) of a unit file: comments out, backslash continuations joined."""
    continuation: str | None = None
    first = 0
    for number, raw in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        stripped = raw.lstrip(" \t")
        if stripped[:1] in ("#", ";"):
            continue
        if continuation is None:
            first = number
        joined = raw if continuation is None else continuation + raw
        escaped = False
        for c in joined:
            escaped = not escaped if c == "\\" else False
        if escaped:
            continuation = joined[:-1] + " "
            continue
        continuation = None
        yield first, joined.strip()
    if continuation is not None:
        yield first, continuation.strip()


def _read_dropins(directory: str, env_file: str) -> _Unit:
    unit = _Unit(environment_files=[(f"-{env_file}", "the unit")])
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".conf"))
    except FileNotFoundError:
        return unit
    except OSError as error:
        raise SourceError(f"cannot list {directory}: {error.strerror}") from None
    for name in names:
        path = os.path.join(directory, name)
        unit.dropins.append(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            raise SourceError(f"cannot read the drop-in {path}: {reason}") from None
        section = ""
        for line, entry in _unit_lines(text):
            if not entry:
                continue
            if entry.startswith("["):
                section = entry[1:-1] if entry.endswith("]") else ""
                continue
            if section != "Service" or "=" not in entry:
                continue
            key, _, value = entry.partition("=")
            _apply(unit, key.strip(), value.strip(), f"{path} line {line}", path)
    return unit


def _apply(unit: _Unit, key: str, value: str, where: str, path: str) -> None:
    if key == "Environment":
        if not value:
            unit.environment.clear()
            return
        for assignment in _environment_words(value, where, unit.notes):
            name, _, text = assignment.partition("=")
            if "=" not in assignment or not _NAME.match(name):
                unit.notes.append(
                    f"{where}: an invalid Environment= assignment; systemd ignores it"
                )
                continue
            unit.environment[name] = (text, path)
    elif key == "EnvironmentFile":
        if not value:
            unit.environment_files.clear()
            unit.notes.append(
                f"{where}: an empty EnvironmentFile= drops the files before it, the unit's too"
            )
            return
        unit.environment_files.append((_specifiers(value, where, unit.notes), path))
    elif key == "LoadCredential":
        if not value:
            unit.credential = None
            return
        ident, _, source = value.partition(":")
        if ident == CREDENTIAL_NAME:
            unit.credential = (source or ident, path)
    elif key in ("LoadCredentialEncrypted", "SetCredential", "SetCredentialEncrypted") and (
        value.partition(":")[0] == CREDENTIAL_NAME
    ):
        unit.notes.append(f"{where}: {key}=worker_token is not checked by callmeter config")


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPES.update({"\\": "\\", '"': '"', "'": "'", "s": " "})


def _environment_words(value: str, where: str, notes: list[str]) -> list[str]:
    """Split an ``Environment=`` value like systemd's extract_first_word(UNQUOTE|CUNESCAPE).

    A syntax error (unbalanced quote, unknown escape) makes systemd ignore the rest of the line,
    keeping the words before it.
    """
    words: list[str] = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in " \t\n\r":
            i += 1
        if i >= n:
            return words
        word: list[str] = []
        quote = ""
        while i < n and (quote or value[i] not in " \t\n\r"):
            c = value[i]
            if c == "\\":
                decoded, i = _unescape(value, i + 1)
                if decoded is None:
                    notes.append(
                        f"{where}: invalid syntax in Environment=; systemd ignores the rest"
                    )
                    return words
                word.append(decoded)
                continue
            if quote and c == quote:
                quote = ""
            elif not quote and c in "'\"":
                quote = c
            else:
                word.append(c)
            i += 1
        if quote:
            notes.append(f"{where}: unbalanced quote in Environment=; systemd ignores the rest")
            return words
        words.append(_specifiers("".join(word), where, notes))


def _unescape(text: str, i: int) -> tuple[str | None, int]:
    """systemd's cunescape_one() at ``text[i]`` (after a backslash): (character, next index)."""
    if i >= len(text):
        return None, i
    c = text[i]
    if c in _ESCAPES:
        return _ESCAPES[c], i + 1
    digits = {"x": (2, 16), "u": (4, 16), "U": (8, 16)}.get(c)
    start = i + 1
    if digits is None and c in "01234567":
        digits, start = (3, 8), i
    if digits is None:
        return None, i
    width, base = digits
    chunk = text[start : start + width]
    try:
        code = int(chunk, base) if len(chunk) == width else -1
    except ValueError:
        code = -1
    if code <= 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None, i
    return chr(code), start + width


def _specifiers(text: str, where: str, notes: list[str]) -> str:
    """``%%`` becomes ``%``; other unit specifiers (``%n``, ``%h``...) are left as written."""
    if "%" not in text:
        return text
    if re.search(r"%[^%]", text.replace("%%", "")):
        notes.append(f"{where}: unit specifiers (%...) are not expanded by callmeter config")
    return text.replace("%%", "%")


# -- everything together ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sources:
    """The environment the service would get, and where each of its values comes from."""

    environ: dict[str, str]
    """The merged environment, for :func:`callmeter.config.load_config`."""
    origins: dict[str, str]
    """variable -> the file it comes from, ``drop-in PATH`` or :data:`SHELL`."""
    credential_file: str | None
    """The token credential's file (``LoadCredential=worker_token:``), when it will be read."""
    credential_dropin: str | None
    """The drop-in that sets that ``LoadCredential=``."""
    summary: list[str]
    """One line per source: what was read, what is absent."""
    notes: list[str]

    def where(self, variable: str) -> str:
        """`` (from ...)`` to append to an error line about ``variable``; empty for the shell's.

        config.py names a bad token WORKER_TOKEN wherever it was read from, and a credential
        file CREDENTIALS_DIRECTORY: both get the file and the drop-in that names it.
        """
        used = _token_variable(self.environ)
        if variable == "CREDENTIALS_DIRECTORY" or (variable == "WORKER_TOKEN" and used != variable):
            if used == "credential" and self.credential_file:
                return (
                    f" (credential {CREDENTIAL_NAME} {self.credential_file}, LoadCredential= in "
                    f"{self.credential_dropin})"
                )
            if used != "WORKER_TOKEN_FILE":
                return ""  # $CREDENTIALS_DIRECTORY: run by systemd, with the service's credentials
            origin = self.origins.get(used)
            if origin is None or origin == SHELL:
                return f" (read from {self.environ[used]})"
            return f" (read from {self.environ[used]}, WORKER_TOKEN_FILE from {origin})"
        origin = self.origins.get(variable)
        if origin is None or origin == SHELL:
            return ""
        return f" (from {origin})"


def gather(
    environ: Mapping[str, str],
    *,
    env_file: str = ENV_FILE,
    dropin_dir: str = DROPIN_DIR,
    credstore_dirs: Sequence[str] = CREDSTORE_DIRS,
    require_token: bool = True,
) -> Sources:
    """Read what the service reads; raise :class:`SourceError` for what cannot be read."""
    unit = _read_dropins(dropin_dir, env_file)
    notes = list(unit.notes)
    summary: list[str] = []
    merged: dict[str, str] = {}
    origins: dict[str, str] = {}

    for name, (value, path) in unit.environment.items():
        merged[name], origins[name] = value, f"drop-in {path}"
    # Every environment file wins over every Environment=, whatever the order of the lines.
    for spec, where in unit.environment_files:
        for env in _read_environment_file(spec, where, summary):
            notes.extend(env.notes)
            for name, value in env.values.items():
                if origins.get(name, "").startswith("drop-in "):
                    notes.append(
                        f"{name}: Environment= in {origins[name][8:]} is overridden by "
                        f"{env.path} (systemd: EnvironmentFile= wins over Environment=)"
                    )
                merged[name], origins[name] = value, env.path
    listed = ", ".join(os.path.basename(path) for path in unit.dropins) or "none"
    summary.append(f"{dropin_dir}: drop-ins: {listed}")

    credential_file: str | None = None
    dropin: str | None = None
    if unit.credential is not None:
        written, dropin = unit.credential
        credential_file = _credential_path(written, dropin, credstore_dirs)
        problem = _unreadable(credential_file)
        if problem:
            message = (
                f"cannot read {credential_file} (credential {CREDENTIAL_NAME}, LoadCredential= "
                f"in {dropin}): {problem.strerror or problem}"
            )
            if require_token:
                hint = f"; {_SUDO}" if isinstance(problem, PermissionError) else ""
                raise SourceError(message + hint)
            notes.append(message + "; the token is not checked (--no-token)")
            credential_file = None
        else:
            summary.append(
                f"credential {CREDENTIAL_NAME}: {credential_file} (LoadCredential= in {dropin})"
            )

    from_shell: list[str] = []
    for name, value in environ.items():
        # Only the worker's own variables are labelled: whatever else the shell has, the
        # worker does not read.
        if name in KNOWN and merged.get(name) != value:
            if name in merged:
                notes.append(
                    f"{name}: your shell's value hides the one from {origins[name]}, "
                    "which is what the service uses"
                )
            origins[name] = SHELL
            from_shell.append(name)
        merged[name] = value
    if from_shell:
        summary.append(
            f"your shell environment: {', '.join(sorted(from_shell))} "
            "(the service does not see these; `env -i callmeter config` leaves them out)"
        )

    if credential_file and _token_variable(merged) != "credential":
        notes.append(
            f"the credential {CREDENTIAL_NAME} ({credential_file}) is not used: "
            f"{_token_variable(merged)} comes first"
        )
    return Sources(merged, origins, credential_file, dropin, summary, notes)


def _read_environment_file(spec: str, where: str, summary: list[str]) -> list[EnvFile]:
    ignore_missing = spec.startswith("-")
    pattern = spec[1:] if ignore_missing else spec
    set_in = "" if where == "the unit" else f" (EnvironmentFile= in {where})"
    paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    found: list[EnvFile] = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            if ignore_missing:
                summary.append(f"{path}: absent{set_in}; fine, the defaults apply")
                continue
            raise SourceError(f"{path}: no such file{set_in}; systemd refuses to start") from None
        except OSError as error:
            hint = f"; {_SUDO}" if isinstance(error, PermissionError) else ""
            raise SourceError(f"cannot read {path}{set_in}: {error.strerror}{hint}") from None
        env = parse_env_file(data, path)
        count = len(env.values)
        summary.append(f"{path}: {count} setting{'' if count == 1 else 's'}{set_in}")
        found.append(env)
    if not paths:
        if not ignore_missing:
            raise SourceError(f"{pattern}: no file matches{set_in}; systemd refuses to start")
        summary.append(f"{pattern}: no file matches{set_in}; fine, it is optional")
    return found


def _credential_path(written: str, dropin: str, credstore_dirs: Sequence[str]) -> str:
    if os.path.isabs(written):
        return written
    for directory in credstore_dirs:
        candidate = os.path.join(directory, written)
        if os.path.exists(candidate):
            return candidate
    raise SourceError(
        f"LoadCredential={CREDENTIAL_NAME}:{written} in {dropin}: no such file in "
        + ", ".join(credstore_dirs)
    )


def _unreadable(path: str) -> OSError | None:
    try:
        with open(path, "rb"):
            return None
    except OSError as error:
        return error


def _token_variable(env: Mapping[str, str]) -> str:
    """Which source config._token() takes the token from, first match wins."""
    if "WORKER_TOKEN" in env:
        return "WORKER_TOKEN"
    if "WORKER_TOKEN_FILE" in env:
        return "WORKER_TOKEN_FILE"
    if env.get("CREDENTIALS_DIRECTORY") and os.path.exists(
        os.path.join(env["CREDENTIALS_DIRECTORY"], CREDENTIAL_NAME)
    ):
        return "CREDENTIALS_DIRECTORY"
    return "credential"


# -- the table -------------------------------------------------------------------------------


def render(config: Config, sources: Sources) -> str:
    """The output of `callmeter config`: the sources, one row per variable, the notes."""
    rows = [
        (name, value, _source(name, config, sources)) for name, value in config.describe().items()
    ]
    width = max(len(value) for _, value, _ in rows)
    lines = _summary(sources)
    lines += ["", f"{'VARIABLE':24} {'VALUE':{width}}  SOURCE"]
    lines += [f"{name:24} {value:{width}}  {source}" for name, value, source in rows]
    lines += _notes(sources)
    return "".join(f"{line.rstrip()}\n" for line in lines)


def render_sources(sources: Sources) -> str:
    """The sources and the notes alone: what `callmeter config` prints before an error."""
    return "".join(f"{line}\n" for line in _summary(sources) + _notes(sources))


def _summary(sources: Sources) -> list[str]:
    return ["Sources:", *(f"  {line}" for line in sources.summary)]


def _notes(sources: Sources) -> list[str]:
    return ["", *(f"note: {note}" for note in sources.notes)] if sources.notes else []


def _source(name: str, config: Config, sources: Sources) -> str:
    env, origins = sources.environ, sources.origins
    if name == "WORKER_TOKEN":
        if config.worker_token is None:
            return DEFAULT
        used = _token_variable(env)
        if used == "WORKER_TOKEN":
            return origins.get("WORKER_TOKEN", DEFAULT)
        if used == "WORKER_TOKEN_FILE":
            return f"file {config.token_source} (WORKER_TOKEN_FILE from {origins.get(used, '?')})"
        if used == "CREDENTIALS_DIRECTORY":
            return f"credential {config.token_source} ($CREDENTIALS_DIRECTORY)"
        return f"credential {config.token_source}"
    if name in ("HTTPS_PROXY", "NO_PROXY") and name not in env:
        name = name.lower()
    origin = origins.get(name)
    if origin is None:
        return DEFAULT
    if env.get(name) == "" and origin != SHELL:
        return f"{origin} (empty: the default)"
    return origin
