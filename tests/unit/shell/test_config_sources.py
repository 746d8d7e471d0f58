"""`callmeter config` reads what systemd gives the service: the environment file, drop-ins, the
token credential, and says where every value came from (callmeter.config_sources)."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmeter import config_sources
from callmeter.cli import _config, main
from callmeter.config_sources import SHELL, SourceError, gather, parse_env_file

TOKEN = "tok-9f2c41d7e0"
BASE = "SIP_IP=127.0.0.1\n"  # in the file, so that no test depends on this host's addresses


def values(text: str | bytes) -> dict[str, str]:
    data = text.encode() if isinstance(text, str) else text
    return parse_env_file(data, "/etc/test.env").values


def notes(text: str) -> list[str]:
    return parse_env_file(text.encode(), "/etc/test.env").notes


class Setup:
    """An environment file, a drop-in directory and a credential store under tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path
        self.env_file = tmp_path / "worker.env"
        self.dropins = tmp_path / "callmeter-worker.service.d"
        self.credstore = tmp_path / "credstore"

    def env(self, text: str) -> Setup:
        self.env_file.write_text(text, encoding="utf-8")
        return self

    def dropin(self, name: str, text: str) -> Path:
        self.dropins.mkdir(exist_ok=True)
        path = self.dropins / name
        path.write_text(text, encoding="utf-8")
        return path

    def run(
        self,
        capsys: pytest.CaptureFixture[str],
        environ: dict[str, str] | None = None,
        *,
        require_token: bool = True,
    ) -> tuple[int, str, str]:
        out = io.StringIO()
        code = _config(
            environ or {},
            out,
            require_token=require_token,
            env_file=str(self.env_file),
            dropin_dir=str(self.dropins),
            credstore_dirs=[str(self.credstore)],
        )
        return code, out.getvalue(), capsys.readouterr().err

    def gather(self, environ: dict[str, str] | None = None) -> config_sources.Sources:
        return gather(
            environ or {},
            env_file=str(self.env_file),
            dropin_dir=str(self.dropins),
            credstore_dirs=[str(self.credstore)],
        )


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def row(output: str, variable: str) -> tuple[str, str]:
    """(value, source) of a variable's row in the table."""
    header = next(line for line in output.splitlines() if line.startswith("VARIABLE "))
    value_at, source_at = header.index("VALUE"), header.index("SOURCE")
    line = next(line for line in output.splitlines() if line.startswith(f"{variable} "))
    return line[value_at:source_at].strip(), line[source_at:].strip()


# -- the environment file, as systemd parses it --------------------------------------------


def test_systemds_own_test_vectors() -> None:
    # src/test/test-env-file.c: continuation lines, escaped trailing space, empty values.
    assert values("a=a\nb=b\\\nc\nd=d\\\ne\\\nf\ng=g\\ \nh=h\ni=i\\") == {
        "a": "a",
        "b": "bc",
        "d": "def",
        "g": "g ",
        "h": "h",
        "i": "i",
    }
    assert values("a=a\\\n") == {"a": "a"}
    assert values(
        '# Generated\n\nHWMON_MODULES="coretemp f71882fg"\n\n# For compatibility reasons\n\n'
        "MODULE_0=coretemp\nMODULE_1=f71882fg"
    ) == {"HWMON_MODULES": "coretemp f71882fg", "MODULE_0": "coretemp", "MODULE_1": "f71882fg"}
    assert values("a=\nb=") == {"a": "", "b": ""}


def test_comment_ending_in_backslash_follows_systemd_254_and_says_so() -> None:
    text = '#SPAMD_ARGS="-d \\\n#--nouser-config   \\\nnormal=line'
    assert values(text) == {"normal": "line"}
    assert any("systemd 254 and later" in note and "252" in note for note in notes(text))


def test_quotes_whitespace_and_comments() -> None:
    parsed = values(
        "  A = spaced value  \n"
        "B='single \"quoted\" $HOME \\n'\n"
        'C="double \\"q\\" \\\\ \\$HOME \\` \\x"\n'
        "D='two\nlines'\n"
        "E=\"joined\"'parts' after\n"
        "F=value # not a comment\n"
        "; a comment\n"
        "\t# an indented comment\n"
        "G=$HOME ${X} `id`\n"
        'H=""\n'
        "I=\\'escaped\\ quote\\'\n"
    )
    assert parsed == {
        "A": "spaced value",
        "B": 'single "quoted" $HOME \\n',
        "C": 'double "q" \\ $HOME ` \\x',
        "D": "two\nlines",
        "E": "joinedpartsafter",
        "F": "value # not a comment",
        "G": "$HOME ${X} `id`",
        "H": "",
        "I": "'escaped quote'",
    }


def test_crlf_lines_and_a_nul_byte() -> None:
    assert values("A=1\r\nB=2\r\n") == {"A": "1", "B": "2"}
    parsed = parse_env_file(b"A=1\nB=2\x00\nC=3\n", "/etc/test.env")
    assert parsed.values == {"A": "1", "B": "2"}
    assert any("NUL" in note for note in parsed.notes)


def test_lines_systemd_ignores_are_noted_without_their_content() -> None:
    text = (
        "export LOG_LEVEL=debug\n"
        f"just-a-token-{TOKEN}\n"
        "BAD NAME=1\n"
        "1ABC=2\n"
        "\ufeffGATEWAY_URL=wss://x\n"
        "LOG_LEVL=debug\n"
        "HEALTH_PORT=1\n"
        "HEALTH_PORT=2\n"
    )
    parsed = parse_env_file(text.encode(), "/etc/test.env")
    assert parsed.values == {"LOG_LEVL": "debug", "HEALTH_PORT": "2"}
    joined = "\n".join(parsed.notes)
    assert "line 1: 'export LOG_LEVEL=' is not understood" in joined
    assert "line 2: no '='" in joined
    assert "line 3: the name before '=' is not a variable name" in joined
    assert "line 4: the name before '='" in joined
    assert "line 5: the name before '='" in joined  # a byte order mark
    assert "line 6: LOG_LEVL is not a callmeter variable" in joined
    assert "HEALTH_PORT is set on lines 7 and 8; line 8 counts" in joined
    assert TOKEN not in joined
    assert parsed.lines == {"LOG_LEVL": 6, "HEALTH_PORT": 8}


def test_invalid_utf8_is_an_error_naming_file_and_line() -> None:
    with pytest.raises(SourceError, match=r"^/etc/test.env line 2: not UTF-8 text; systemd"):
        parse_env_file(b"A=1\nB=caf\xe9\n", "/etc/test.env")


VALUE = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))  # type: ignore[arg-type]
NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)


def single_quoted(value: str) -> str | None:
    return None if "'" in value else f"'{value}'"


def double_quoted(value: str) -> str:
    return '"' + "".join(f"\\{c}" if c in '"\\`$' else c for c in value) + '"'


def unquoted(value: str) -> str | None:
    # Every character escaped; an escaped newline or CR is a line continuation instead.
    return None if any(c in "\n\r" for c in value) else "".join(f"\\{c}" for c in value)


@given(
    st.lists(
        st.tuples(NAME, VALUE, st.sampled_from([single_quoted, double_quoted, unquoted])),
        max_size=8,
    ),
    st.sampled_from(["\n", "\r\n"]),
)
def test_quoted_values_come_back_exactly(
    entries: list[tuple[str, str, Callable[[str], str | None]]], newline: str
) -> None:
    lines, expected = ["# generated"], {}
    for name, value, quote in entries:
        written = quote(value)
        if written is None:
            continue
        lines.append(f"{name}={written}")
        expected[name] = value
    assert values(newline.join(lines) + newline) == expected


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_fail_with_a_source_error(data: bytes) -> None:
    try:
        parsed = parse_env_file(data, "/etc/test.env")
    except SourceError as error:
        assert str(error).startswith("/etc/test.env line ")
        return
    for name in parsed.values:
        assert name.isascii() and name.replace("_", "a").isalnum() and not name[0].isdigit()


@given(NAME, st.text(st.characters(whitelist_categories=("L", "N", "P", "S")), min_size=1))
def test_unquoted_simple_values_are_verbatim(name: str, value: str) -> None:
    if "\\" in value or value[0] in "'\"":
        return
    assert values(f"{name}={value}\n") == {name: value}


# -- precedence and source labels -----------------------------------------------------------


def test_labels_default_file_and_shell(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    setup.env(BASE + f"WORKER_TOKEN={TOKEN}\nLOG_LEVEL=warn\nHEALTH_PORT=4000\n")
    code, out, err = setup.run(capsys, {"HEALTH_PORT": "4001", "LOG_LEVEL": "warn", "HOME": "/x"})
    assert (code, err) == (0, "")
    env = str(setup.env_file)
    assert row(out, "WORKER_TOKEN") == ("(set, from WORKER_TOKEN)", env)
    assert row(out, "SIP_IP") == ("127.0.0.1", env)
    assert row(out, "GATEWAY_URL") == ("wss://wg.callmeter.io:443", "default")
    # The same value in the shell as in the file: the file is where the service gets it.
    assert row(out, "LOG_LEVEL") == ("warn", env)
    # A different one: it wins here, flagged, and the note says the service has the file's.
    assert row(out, "HEALTH_PORT") == ("4001", SHELL)
    assert f"note: HEALTH_PORT: your shell's value hides the one from {env}" in out
    assert "your shell environment: HEALTH_PORT (the service does not see these" in out
    assert f"{env}: 4 settings" in out
    assert "HOME" not in out  # not a callmeter variable
    assert TOKEN not in out


def test_absent_env_file_is_fine_and_said(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = setup.run(capsys, {"SIP_IP": "127.0.0.1"}, require_token=False)
    assert (code, err) == (0, "")
    assert f"{setup.env_file}: absent; fine, the defaults apply" in out
    assert f"{setup.dropins}: drop-ins: none" in out
    assert row(out, "WORKER_TOKEN") == ("(unset)", "default")
    assert row(out, "SIP_IP") == ("127.0.0.1", SHELL)


def test_empty_value_in_the_file_means_the_default(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    setup.env(BASE + "SDP_IP=\nLOG_LEVEL=\n")
    code, out, _ = setup.run(capsys, require_token=False)
    assert code == 0
    assert row(out, "SDP_IP") == ("127.0.0.1", f"{setup.env_file} (empty: the default)")
    assert row(out, "LOG_LEVEL") == ("info", f"{setup.env_file} (empty: the default)")


def test_lowercase_proxy_variables_are_labelled(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    setup.env(BASE + "https_proxy=http://user:hunter2@proxy.test:3128\nno_proxy=10.0.0.0/8\n")
    code, out, _ = setup.run(capsys, require_token=False)
    assert code == 0
    assert row(out, "HTTPS_PROXY") == ("http://user:***@proxy.test:3128", str(setup.env_file))
    assert row(out, "NO_PROXY") == ("10.0.0.0/8", str(setup.env_file))
    assert "hunter2" not in out


def test_bad_value_names_the_file_it_came_from(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    setup.env(BASE + f"WORKER_TOKEN={TOKEN}\nHEALTH_PORT=99999\n")
    code, out, err = setup.run(capsys)
    assert code == 2
    assert err == (
        f"callmeter: HEALTH_PORT='99999' is invalid: a port number 0..65535 "
        f"(from {setup.env_file})\n"
    )
    assert f"{setup.env_file}: 3 settings" in out  # the sources, printed before the error
    # From the shell: the line stays as load_config words it.
    code, _, err = setup.run(capsys, {"HEALTH_PORT": "70000"})
    assert err == "callmeter: HEALTH_PORT='70000' is invalid: a port number 0..65535\n"


def test_unreadable_env_file_is_an_error_naming_it(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    setup.env(BASE)
    real = Path.read_bytes

    def denied(self: Path) -> bytes:
        if self == setup.env_file:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    # chmod 000 does not stop root; the error is the same for everyone else.
    monkeypatch.setattr(Path, "read_bytes", denied)
    code, out, err = setup.run(capsys)
    assert (code, out) == (2, "")
    assert err == (
        f"callmeter: cannot read {setup.env_file}: Permission denied; systemd reads it as "
        "root: run `sudo callmeter config`\n"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode 000 file")
def test_unreadable_env_file_for_real(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    setup.env(BASE)
    setup.env_file.chmod(0)
    code, _, err = setup.run(capsys)
    assert code == 2 and f"cannot read {setup.env_file}: Permission denied" in err


def test_env_file_that_is_not_utf8(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    setup.env_file.write_bytes(b"SIP_IP=127.0.0.1\nLOG_LEVEL=d\xe9bug\n")
    code, _, err = setup.run(capsys)
    assert code == 2
    assert err.startswith(f"callmeter: {setup.env_file} line 2: not UTF-8 text; systemd ignores")


# -- drop-ins and the credential ------------------------------------------------------------


def test_token_from_a_dropin_credential_is_never_printed(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = setup.root / "worker.token"
    token_file.write_text(TOKEN + "\n")
    dropin = setup.dropin(
        "50-token.conf",
        f"# systemctl edit callmeter-worker\n[Service]\nLoadCredential=worker_token:{token_file}\n",
    )
    setup.env(BASE)
    code, out, err = setup.run(capsys)
    assert (code, err) == (0, "")
    assert row(out, "WORKER_TOKEN") == (f"(set, from {token_file})", f"credential {token_file}")
    assert f"credential worker_token: {token_file} (LoadCredential= in {dropin})" in out
    assert f"{setup.dropins}: drop-ins: 50-token.conf" in out
    assert TOKEN not in out + err


def test_credential_from_the_credstore_and_reset(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    setup.credstore.mkdir()
    (setup.credstore / "worker_token").write_text(TOKEN)
    setup.env(BASE)
    setup.dropin("10-a.conf", "[Service]\nLoadCredential=worker_token\n")
    code, out, _ = setup.run(capsys)
    assert code == 0
    assert row(out, "WORKER_TOKEN")[1] == f"credential {setup.credstore / 'worker_token'}"
    # A later drop-in's empty LoadCredential= drops it: no token at all.
    setup.dropin("20-b.conf", "[Service]\nLoadCredential=\n")
    code, _, err = setup.run(capsys)
    assert code == 2 and err.startswith("callmeter: WORKER_TOKEN=(unset) is invalid")


def test_credential_and_token_file_lose_to_worker_token(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    cred = setup.root / "cred"
    cred.write_text("other-token")
    setup.dropin("50.conf", f"[Service]\nLoadCredential=worker_token:{cred}\n")
    setup.env(BASE + f"WORKER_TOKEN={TOKEN}\n")
    code, out, _ = setup.run(capsys)
    assert code == 0
    assert row(out, "WORKER_TOKEN")[1] == str(setup.env_file)
    assert (
        f"note: the credential worker_token ({cred}) is not used: WORKER_TOKEN comes first" in out
    )
    # WORKER_TOKEN_FILE beats the credential too, and its row says where it was set.
    token_file = setup.root / "token.txt"
    token_file.write_text(TOKEN)
    setup.env(BASE + f"WORKER_TOKEN_FILE={token_file}\n")
    code, out, _ = setup.run(capsys)
    assert row(out, "WORKER_TOKEN")[1] == (
        f"file {token_file} (WORKER_TOKEN_FILE from {setup.env_file})"
    )
    assert TOKEN not in out and "other-token" not in out


def test_unreadable_credential(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = setup.root / "absent.token"
    dropin = setup.dropin("50.conf", f"[Service]\nLoadCredential=worker_token:{missing}\n")
    setup.env(BASE)
    code, out, err = setup.run(capsys)
    assert code == 2
    assert err == (
        f"callmeter: cannot read {missing} (credential worker_token, LoadCredential= in "
        f"{dropin}): No such file or directory\n"
    )
    # --no-token: the credential is not needed, a note says it was not checked.
    code, out, err = setup.run(capsys, require_token=False)
    assert (code, err) == (0, "")
    assert "the token is not checked (--no-token)" in out
    assert row(out, "WORKER_TOKEN") == ("(unset)", "default")
    # A root-only token file (mode 0600, as worker.env's template says), read by a user.
    missing.write_text(TOKEN)
    monkeypatch.setattr(
        config_sources, "_unreadable", lambda path: PermissionError(13, "Permission denied")
    )
    code, out, err = setup.run(capsys)
    assert code == 2
    assert err.endswith(
        f"{dropin}): Permission denied; systemd reads it as root: run `sudo callmeter config`\n"
    )
    assert TOKEN not in out + err


def test_run_by_systemd_with_its_credentials_directory(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    credentials = setup.root / "run-credentials"
    credentials.mkdir()
    (credentials / "worker_token").write_text(TOKEN)
    setup.env(BASE)
    code, out, err = setup.run(capsys, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert (code, err) == (0, "")
    token = credentials / "worker_token"
    assert row(out, "WORKER_TOKEN") == (
        f"(set, from {token})",
        f"credential {token} ($CREDENTIALS_DIRECTORY)",
    )
    assert "your shell environment" not in out
    assert TOKEN not in out


def test_credential_that_is_not_a_valid_token_names_the_dropin(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = setup.root / "bad.token"
    token_file.write_text(f"{TOKEN} with spaces")
    dropin = setup.dropin("50.conf", f"[Service]\nLoadCredential=worker_token:{token_file}\n")
    setup.env(BASE)
    code, out, err = setup.run(capsys)
    assert code == 2
    assert err == (
        "callmeter: WORKER_TOKEN=<hidden, 26 characters> is invalid: printable ASCII without "
        f"spaces (an HTTP header value) (credential worker_token {token_file}, LoadCredential= "
        f"in {dropin})\n"
    )
    assert TOKEN not in out + err
    # The same token in a WORKER_TOKEN_FILE: the error names that file and where it is set.
    setup.env(BASE + f"WORKER_TOKEN_FILE={token_file}\n")
    code, out, err = setup.run(capsys)
    assert code == 2
    assert err.endswith(f"(read from {token_file}, WORKER_TOKEN_FILE from {setup.env_file})\n")
    assert TOKEN not in out + err
    setup.env(BASE + f"WORKER_TOKEN_FILE={setup.root}/nothing\n")
    code, out, err = setup.run(capsys)
    assert err == (
        f"callmeter: WORKER_TOKEN_FILE='{setup.root}/nothing' is invalid: a readable token file "
        f"(No such file or directory) (from {setup.env_file})\n"
    )


def test_token_in_the_file_that_is_invalid_is_not_echoed(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    setup.env(BASE + f'WORKER_TOKEN="{TOKEN} x"\n')
    code, out, err = setup.run(capsys)
    assert code == 2
    assert err == (
        "callmeter: WORKER_TOKEN=<hidden, 16 characters> is invalid: printable ASCII without "
        f"spaces (an HTTP header value) (from {setup.env_file})\n"
    )
    assert TOKEN not in out + err


def test_dropin_environment_and_environment_files(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = setup.root / "extra.env"
    extra.write_text("LOG_FORMAT=json\nHEALTH_PORT=4002\n")
    setup.env(BASE + "HEALTH_PORT=4001\nLOG_LEVEL=warn\n")
    first = setup.dropin(
        "10-env.conf",
        "[Unit]\nEnvironment=MAX_ENDPOINTS=1\n"  # not [Service]: not the service's
        "[Service]\n"
        '; a comment\nEnvironment="LOG_LEVEL=debug" HEALTH_PORT=4000 \\\n'
        "  MAX_ENDPOINTS=9 'MEDIA_CACHE_DIR=/var/cache/cm 1'\n",
    )
    setup.dropin(
        "20-more.conf",
        f"[Service]\nEnvironmentFile={extra}\nEnvironmentFile=-{setup.root}/none.env\n",
    )
    code, out, err = setup.run(capsys, require_token=False)
    assert (code, err) == (0, "")
    # Every environment file wins over Environment=; later files over earlier ones.
    assert row(out, "LOG_LEVEL") == ("warn", str(setup.env_file))
    assert row(out, "HEALTH_PORT") == ("4002", str(extra))
    assert row(out, "LOG_FORMAT") == ("json", str(extra))
    assert row(out, "MAX_ENDPOINTS") == ("9", f"drop-in {first}")
    assert row(out, "MEDIA_CACHE_DIR") == ("/var/cache/cm 1", f"drop-in {first}")
    assert f"{extra}: 2 settings (EnvironmentFile= in {setup.dropins / '20-more.conf'})" in out
    assert f"{setup.root}/none.env: absent (EnvironmentFile= in" in out
    assert f"note: LOG_LEVEL: Environment= in {first} is overridden by {setup.env_file}" in out


def test_dropin_resets_and_required_files(setup: Setup) -> None:
    setup.env(BASE + "LOG_LEVEL=warn\n")
    setup.dropin("10.conf", "[Service]\nEnvironment=LOG_LEVEL=debug\nEnvironment=\n")
    setup.dropin("20.conf", "[Service]\nEnvironmentFile=\n")
    found = setup.gather()
    # Both lists emptied: neither the drop-in's LOG_LEVEL nor the unit's worker.env counts.
    assert "LOG_LEVEL" not in found.environ
    assert any("an empty EnvironmentFile= drops the files before it" in n for n in found.notes)
    setup.dropin("30.conf", f"[Service]\nEnvironmentFile={setup.root}/required.env\n")
    with pytest.raises(SourceError, match=r"required\.env: no such file .*refuses to start"):
        setup.gather()


def test_dropin_environment_syntax(setup: Setup) -> None:
    setup.dropin(
        "10.conf",
        "[Service]\n"
        'Environment=A="x y" B=\\x41\\t C=100%% D=%n\n'
        "Environment=E=1 'F=unbalanced\n"
        "Environment=G=1 H=\\q I=2\n"
        "Environment=not-an-assignment J=3\n",
    )
    found = setup.gather()
    assert {k: found.environ[k] for k in "ABCDEGJ"} == {
        "A": "x y",
        "B": "A\t",
        "C": "100%",
        "D": "%n",
        "E": "1",
        "G": "1",
        "J": "3",
    }
    assert "F" not in found.environ and "H" not in found.environ and "I" not in found.environ
    joined = "\n".join(found.notes)
    assert "line 2: unit specifiers (%...) are not expanded" in joined
    assert "line 3: unbalanced quote" in joined
    assert "line 4: invalid syntax in Environment=" in joined
    assert "line 5: an invalid Environment= assignment" in joined


def test_unreadable_dropin_is_an_error(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    dropin = setup.dropin("50.conf", "[Service]\n")
    real = Path.read_text

    def denied(self: Path, *args: object, **kwargs: object) -> str:
        if self == dropin:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(
        SourceError, match=f"^cannot read the drop-in {re.escape(str(dropin))}: Permission denied"
    ):
        setup.gather()


# -- the command line -----------------------------------------------------------------------


def test_main_takes_env_file_and_the_help_says_what_the_shell_does(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(config_sources, "DROPIN_DIR", str(setup.dropins))
    monkeypatch.setattr(config_sources, "CREDSTORE_DIRS", (str(setup.credstore),))
    setup.env(BASE + f"WORKER_TOKEN={TOKEN}\n")
    out = io.StringIO()
    assert main(["config", "--env-file", str(setup.env_file)], {}, out) == 0
    assert row(out.getvalue(), "WORKER_TOKEN")[1] == str(setup.env_file)
    assert TOKEN not in out.getvalue()

    with pytest.raises(SystemExit):
        main(["config", "--help"], {}, io.StringIO())
    help_text = " ".join(capsys.readouterr().out.split())
    assert "/etc/callmeter/worker.env" in help_text
    assert "the service never sees them" in help_text
    assert "sudo env -i callmeter config" in help_text
    assert "--env-file PATH" in help_text
