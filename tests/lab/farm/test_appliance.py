"""End to end on two simulated Pis: deploy, verify, idempotence, recovery, a real browser. Viewer auth: test_viewer_auth.py."""

from __future__ import annotations

import time
from pathlib import Path


from pi_stream.console import Console
from pi_stream.errors import ExitStatus
from pi_stream.render import render_site
from pi_stream.site import load_site
from pi_stream.verify import verify_site
from pi_stream.workflows import run_deploy
from tests.browser import FRAME_SPREAD_JS, headless_chromium
from tests.conftest import wait_until
from tests.lab.conftest import ssh

ARTIFACTS = Path(__file__).resolve().parents[3] / ".pi-stream" / "test-artifacts"


def test_first_deploy_provisions_both_pis(first_deploy):
    assert first_deploy.status == ExitStatus.OK, first_deploy.failures
    assert set(first_deploy.stats) == {"pi1", "pi2"}
    assert all(s.changed > 0 and s.failures == 0 for s in first_deploy.stats.values())


def test_verify_passes_on_every_host(first_deploy, site_dir, viewer):
    site = load_site(site_dir)
    result = verify_site(site, render_site(site), *viewer)
    failed = [(c.host, c.name, c.detail) for c in result.failed]
    assert result.ok, failed
    assert {c.host for c in result.checks} == {"pi1", "pi2"}
    names = {c.name for c in result.checks}
    assert {"deployed files = rendered bundle", "barn: segment decodes as H.264", "yard: segment decodes as H.264",
            "fail2ban jail pi-stream-auth", "fail2ban jail pi-stream-media", "login as alice"} <= names


def test_second_deploy_changes_nothing(first_deploy, site_dir):
    again = run_deploy(load_site(site_dir), Console(show_progress=False))
    assert again.status == ExitStatus.OK, again.failures
    changed = {host: s.changed for host, s in again.stats.items()}
    assert changed == {"pi1": 0, "pi2": 0}, "idempotence, from Ansible's own stats"


def camera_pid(lab_env, host: str, camera: str) -> str:
    """The camera's ffmpeg, found by the RTMP URL it publishes to (the supervisor's child)."""
    # One string: ssh hands it to the remote shell. The URL is followed by the snapshot outputs.
    out = ssh(lab_env, host, f"pgrep -f -- '1935/live/{camera}( |$)'")
    return out.stdout.strip()


def test_killed_camera_process_comes_back(first_deploy, lab_env, site_dir, viewer):
    before = camera_pid(lab_env, "pi1", "barn")
    assert before.isdigit()
    supervisor = ssh(lab_env, "pi1", "systemctl", "show", "-p", "MainPID", "--value", "pi-stream-capture").stdout.strip()
    ssh(lab_env, "pi1", "kill", "-9", before)
    deadline = time.monotonic() + 60
    after = before
    while time.monotonic() < deadline:
        after = camera_pid(lab_env, "pi1", "barn")
        if after.isdigit() and after != before:
            break
        time.sleep(1)
    assert after.isdigit() and after != before, "the supervisor did not restart the camera"
    assert ssh(lab_env, "pi1", "systemctl", "show", "-p", "MainPID", "--value", "pi-stream-capture").stdout.strip() == supervisor
    site = load_site(site_dir)
    result = verify_site(site, render_site(site), *viewer)
    barn = [c for c in result.checks if c.name == "barn: playlist live and advancing"]
    assert barn and barn[0].ok, barn


def test_player_page_plays_in_headless_chromium(first_deploy, lab_env, viewer):
    """hls.js in a real browser: the video's time advances and the frame is a picture, not an error."""
    driver = headless_chromium("--ignore-certificate-errors", window="1280,800")
    try:
        driver.set_page_load_timeout(30)
        driver.get(f"https://{lab_env.hosts[0].address}/")
        # The login form, as a person would use it: one bcrypt check on the Pi, then cookies.
        wait_until(lambda: driver.find_element("id", "login").is_displayed(), "the login form")
        driver.find_element("name", "user").send_keys(viewer[0])
        driver.find_element("name", "password").send_keys(viewer[1])
        driver.find_element("css selector", "#login button").click()
        wait_until(lambda: driver.find_elements("css selector", "#camera-barn video"), "the camera grid")
        titles = [e.text for e in driver.find_elements("css selector", ".camera .title")]
        assert titles == ["barn", "yard"], titles
        video_time = "return document.querySelector('#camera-barn video').currentTime"
        deadline = time.monotonic() + 45
        while driver.execute_script(video_time) < 1 and time.monotonic() < deadline:
            time.sleep(0.5)
        start = driver.execute_script(video_time)
        time.sleep(5)
        end = driver.execute_script(video_time)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "player.png"))
        assert end - start > 3, f"video time did not advance: {start} -> {end}"
        # Pixel variance of the current frame: a test pattern, not a black or error frame.
        spread = driver.execute_script(
            FRAME_SPREAD_JS + "const v = document.querySelector('#camera-barn video'); return [v.videoWidth, v.videoHeight, frameSpread(v)];"
        )
        assert spread[:2] == [640, 360] and spread[2] > 50, spread
        status = driver.find_element("css selector", "#camera-barn .status").text
        assert status == "live", status
        # Logging out stops the players and brings the form back.
        driver.find_element("id", "logout").click()
        wait_until(lambda: driver.find_element("id", "login").is_displayed(), "the login form after logout")
        assert not driver.find_elements("css selector", ".camera video")
    finally:
        driver.quit()

