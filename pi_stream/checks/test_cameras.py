"""Each camera as a logged-in viewer gets it: the capture live, a playlist that advances, a segment a player can start
on, the latest snapshot, a WebRTC offer through the relay; on a relay site, the cameras through the relay in use."""

import pytest

pytestmark = pytest.mark.pi_stream_checks("cameras")


def test_camera(pi_stream_check):
    """One camera check (its id: HOST-CAMERA: CHECK); docs/checks.md says what each means."""
    pi_stream_check()
