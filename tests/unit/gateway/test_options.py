"""``twistd callmeter-gateway`` options: secrets from files, errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.python import usage

from callmeter.gateway.options import GatewayOptions, read_worker_tokens


def test_token_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# workers\nlab-1 tok-1\n\nlab-2   tok-2\n")
    assert read_worker_tokens(str(path)) == {"lab-1": "tok-1", "lab-2": "tok-2"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("lab-1\n", ":1: expected NAME TOKEN"),
        ("lab-1 a b\n", ":1: expected NAME TOKEN"),
        ("lab-1 t1\nlab-1 t2\n", ":2: worker lab-1 listed twice"),
        ("lab-1 same\nlab-2 same\n", ":2: token of lab-2 is also another worker's"),
        ("bad/name t\n", ":1: a worker name"),
        ("# nothing\n", "no worker tokens"),
    ],
)
def test_token_file_errors_name_the_line_not_the_token(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(ValueError) as caught:
        read_worker_tokens(str(path))
    assert problem in str(caught.value)
    assert "same" not in str(caught.value) and "t2" not in str(caught.value)


def test_options_read_the_files(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text("lab-1 tok-1\n")
    (tmp_path / "admin").write_text("admin-tok\n")
    options = GatewayOptions()
    options.parseOptions(
        ["--listen", "tcp:0", "--db", str(tmp_path / "db"),
         "--worker-tokens", str(tmp_path / "tokens"), "--admin-token-file", str(tmp_path / "admin")]
    )  # fmt: skip
    assert options["tokens"] == {"lab-1": "tok-1"} and options["admin-token"] == "admin-tok"
    with pytest.raises(usage.UsageError, match="--admin-token-file is required"):
        GatewayOptions().parseOptions(["--worker-tokens", str(tmp_path / "tokens")])
