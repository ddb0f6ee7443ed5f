"""The login service under a thread-starving flood, with the limit systemd puts on it (TasksMax), on this machine.

pi-stream-auth.service runs with TasksMax=64: every thread counts. A flood of
wrong passwords from a few addresses, each inside nginx's per-address limit,
keeps dozens of connections waiting for the one bcrypt slot at once. The
service must keep answering the cheap requests that logged-in viewers make on
every page and every proxied DVR request (`/auth/session`, nginx's
`auth_request` to `/auth/dvr/NAME/check`): a refused thread there is a 500
for someone who did nothing wrong.

The service runs in a pids cgroup of its own (cgroup v1, as on this machine
kind) with the unit's TasksMax, so "can't start new thread" happens here as it
would on the Pi. Every loop is bounded in count and time.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import bcrypt
import pytest

from pi_stream.render import TEMPLATES_DIR
from tests.conftest import wait_until
from tests.configs.tree import UnixHTTPConnection, auth_tasks_max, auth_tool_argv, in_cgroup_argv, pids_cgroup

SERVICE = "usr/local/lib/pi-stream/pi_stream_auth.py"
VIEWER, PASSWORD = "alice", "alice's long password"
# Inside nginx's per-address limits (limit_conn 10 on the server, login burst 5): the review's flood.
FLOOD_ADDRESSES, CONNECTIONS_PER_ADDRESS = 7, 10
FLOOD_SECONDS = 8.0


def request(path: Path, method: str, url: str, body: dict | None = None, cookie: str = "", timeout: float = 15.0) -> int | str:
    """The status, or the name of the error when there was no answer (a dropped connection, a timeout)."""
    connection = UnixHTTPConnection(path, timeout)
    headers = {"Host": "cam.test", "Connection": "close"}
    if cookie:
        headers["Cookie"] = cookie
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        connection.request(method, url, body=payload, headers=headers)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__
    finally:
        connection.close()


def login_cookie(path: Path, url: str, name: str) -> str:
    """The viewer's own login at `url` (before the flood): the "NAME=VALUE" of the cookie it sets."""
    connection = UnixHTTPConnection(path, 15)
    try:
        connection.request("POST", url, body=json.dumps({"user": VIEWER, "password": PASSWORD}).encode(),
                           headers={"Host": "cam.test", "Content-Type": "application/json", "Connection": "close"})
        answer = connection.getresponse()
        assert answer.status == 200, f"the viewer's own login at {url}: {answer.status}"
        return next(value.split(";")[0] for header, value in answer.getheaders()
                    if header.lower() == "set-cookie" and value.startswith(f"{name}="))
    finally:
        connection.close()


@pytest.fixture
def starved_service(tmp_path):
    """The service as the roles install it, serving a unix socket, in a pids cgroup limited to the unit's TasksMax."""
    root = tmp_path
    (root / SERVICE).parent.mkdir(parents=True)
    shutil.copy(TEMPLATES_DIR / SERVICE, root / SERVICE)
    auth = root / "etc/pi-stream/auth"
    auth.mkdir(parents=True)
    access = {"cameras": [{"name": "garden", "title": "Garden"}], "access": {VIEWER: ["garden"]}, "dvrs": {"shed": [VIEWER]},
              "session_seconds": 3600, "link_seconds": 3600, "secure_cookies": False}
    (auth / "access.json").write_text(json.dumps(access))
    # The product's cost (credentials.BCRYPT_ROUNDS): the flood must hold the slot as long as it would.
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(11)).decode()
    (auth / "viewers").write_text(f"{VIEWER}:{hashed}\n")
    (auth / "token.key").write_text(secrets.token_hex(32) + "\n")
    sock = root / "auth.sock"
    stderr = root / "stderr.log"
    with pids_cgroup("test") as cgroup, stderr.open("wb") as errors:
        process = subprocess.Popen(in_cgroup_argv(cgroup, auth_tool_argv(root, "serve", "--listen", str(sock))),
                                   stderr=errors, stdin=subprocess.DEVNULL)
        try:
            wait_until(sock.exists, "the login service's socket", seconds=10, interval=0.05)
            yield sock, process, stderr
        finally:
            process.kill()
            process.wait(timeout=10)


def test_a_thread_starving_flood_leaves_logged_in_viewers_served(starved_service):
    """70 wrong-password logins at once, again and again for 8 s, under TasksMax: the logged-in viewer's session
    and DVR checks all answer (200/204), the flood gets only 401, 503 or 429-like refusals, never a dropped
    connection, and the service never fails to start a thread."""
    sock, process, stderr = starved_service
    dvr_cookie = login_cookie(sock, "/auth/dvr/shed/login", "pi_stream_dvr")
    session_cookie = login_cookie(sock, "/auth/login", "pi_stream_session")

    deadline = time.monotonic() + FLOOD_SECONDS
    flood: Counter = Counter()
    viewer: Counter = Counter()
    lock = threading.Lock()
    peak_threads = 0

    def attacker() -> None:
        for attempt in range(1000):  # bounded in count, and by the deadline
            if time.monotonic() > deadline:
                return
            status = request(sock, "POST", "/auth/login", {"user": VIEWER, "password": f"guess {attempt}"})
            with lock:
                flood[status] += 1

    def watcher() -> None:
        for _ in range(1000):
            if time.monotonic() > deadline:
                return
            for url, cookie, ok in (("/auth/session", session_cookie, 200), ("/auth/dvr/shed/check", dvr_cookie, 204)):
                started = time.monotonic()
                status = request(sock, "GET", url, cookie=cookie, timeout=5)
                with lock:
                    viewer["ok" if status == ok else f"{url} {status}"] += 1
                    viewer["slow"] += time.monotonic() - started > 2.0
            time.sleep(0.1)

    threads = [threading.Thread(target=attacker) for _ in range(FLOOD_ADDRESSES * CONNECTIONS_PER_ADDRESS)]
    threads.append(threading.Thread(target=watcher))
    for thread in threads:
        thread.start()
    while time.monotonic() < deadline:
        status = Path(f"/proc/{process.pid}/status").read_text()
        peak_threads = max(peak_threads, int(re.search(r"^Threads:\s+(\d+)$", status, re.MULTILINE).group(1)))
        time.sleep(0.05)
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "a client thread did not stop"

    errors = stderr.read_text(errors="replace")
    assert "can't start new thread" not in errors, f"the service ran out of threads (peak {peak_threads}):\n{errors[-1500:]}"
    assert process.poll() is None, "the service died under the flood"
    failures = {key: count for key, count in viewer.items() if key not in ("ok", "slow")}
    assert viewer["ok"] > 20 and not failures, f"the logged-in viewer was refused: {dict(viewer)}; flood {dict(flood)}"
    assert viewer["slow"] == 0, f"the logged-in viewer waited over 2 s: {dict(viewer)}"
    assert set(flood) <= {401, 503}, f"the flood got something else than 401 or 503: {dict(flood)}"
    assert peak_threads < auth_tasks_max(), peak_threads
