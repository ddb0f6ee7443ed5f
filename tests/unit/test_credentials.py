"""Viewer credentials: bcrypt hashes the login service can check, a 0600 file, no secret in errors."""

from __future__ import annotations

import stat
import subprocess

import pytest

from pi_stream import credentials
from pi_stream.errors import PiStreamError, SiteError


def test_add_list_remove(tmp_path):
    assert credentials.add_user(tmp_path, "alice", "password one") is False
    assert credentials.add_user(tmp_path, "bob", "password two") is False
    assert credentials.add_user(tmp_path, "alice", "password three") is True
    assert credentials.list_users(tmp_path) == ["alice", "bob"]
    credentials.remove_user(tmp_path, "alice")
    assert credentials.list_users(tmp_path) == ["bob"]
    with pytest.raises(PiStreamError, match="no viewer named 'alice'"):
        credentials.remove_user(tmp_path, "alice")


def test_file_is_private_and_holds_no_password(tmp_path):
    credentials.add_user(tmp_path, "alice", "hunter2hunter2")
    path = credentials.viewers_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "hunter2" not in text
    assert text.startswith(f"alice:$2b${credentials.BCRYPT_COST}$")
    assert credentials.BCRYPT_COST >= credentials.MIN_BCRYPT_COST >= 10


def test_hash_is_verified_by_the_bcrypt_the_login_service_uses(tmp_path):
    """The Pi's login service runs Debian's python3 with python3-bcrypt, not this virtualenv."""
    hashed = credentials.hash_password("s3cret pass")
    check = "import bcrypt, sys; print(bcrypt.checkpw(sys.argv[1].encode(), sys.argv[2].encode()))"
    for password, expected in (("s3cret pass", "True"), ("wrong pass", "False")):
        result = subprocess.run(["/usr/bin/python3", "-c", check, password, hashed], capture_output=True, text=True, timeout=30)
        assert result.stdout.strip() == expected, result.stderr


def test_hash_problem_names_old_and_weak_hashes():
    assert credentials.hash_problem(credentials.hash_password("s3cret pass")) == ""
    assert "not a bcrypt hash" in credentials.hash_problem("$6$rounds=10000$salt$" + "x" * 86)
    weak = "$2b$04$" + "a" * 53
    assert "cost 4" in credentials.hash_problem(weak)


def test_password_longer_than_bcrypt_reads_is_refused(tmp_path):
    with pytest.raises(PiStreamError, match="72 bytes"):
        credentials.add_user(tmp_path, "alice", "é" * 40)


@pytest.mark.parametrize("name", ["Alice", "a:b", "", "x" * 40, "../x", "bob\n"])
def test_bad_user_names(tmp_path, name):
    with pytest.raises(SiteError):
        credentials.add_user(tmp_path, name, "long enough")


def test_short_password_refused_without_echo(tmp_path):
    with pytest.raises(PiStreamError) as info:
        credentials.add_user(tmp_path, "alice", "abc")
    assert "abc" not in str(info.value)


def test_malformed_file_names_line_not_content(tmp_path):
    path = credentials.viewers_path(tmp_path)
    path.write_text("alice:$6$x\nthis line has a secret in it\n")
    with pytest.raises(ValueError) as info:
        credentials.read_htpasswd(path)
    assert "line 2" in str(info.value) and "secret" not in str(info.value)
