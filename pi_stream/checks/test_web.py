"""Each host's web server as a browser meets it: the installed certificate served, HTTP/2 as the site says, a public
page that names no camera, hardened headers, playlists and WebRTC signalling refused before login, then the login."""

import pytest

pytestmark = pytest.mark.pi_stream_checks("web")


def test_web(pi_stream_check):
    """One web check (its id: HOST-CHECK); docs/checks.md says what each means."""
    pi_stream_check()
