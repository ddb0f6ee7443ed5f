"""Viewer credentials: strong hashes nginx can check, a 0600 file, no secret in errors."""

from __future__ import annotations

import stat
import warnings

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
    assert text.startswith(f"alice:$6$rounds={credentials.SHA512_ROUNDS}$")


def test_hash_is_verified_by_the_system_crypt_that_nginx_uses(tmp_path):
    """nginx's auth_basic calls crypt(3); the hash must be one glibc verifies."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    hashed = credentials.hash_password("s3cret pass")
    assert crypt.crypt("s3cret pass", hashed) == hashed
    assert crypt.crypt("wrong pass", hashed) != hashed


@pytest.mark.parametrize("name", ["Alice", "a:b", "", "x" * 40, "../x"])
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
