"""Each host as SSH sees it: reachable, its files byte for byte the rendered bundle, its services running and enabled,
its sockets where they belong, the firewall and fail2ban's jails loaded, security updates applied, tunnels up, and
OvenMediaEngine holding every WebRTC camera."""

import pytest

pytestmark = pytest.mark.pi_stream_checks("host")


def test_host(pi_stream_check):
    """One host check (its id: HOST-CHECK); docs/checks.md says what each means."""
    pi_stream_check()
