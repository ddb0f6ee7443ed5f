"""The site model: valid sites load; every invalid one names file, field and fix, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pi_stream.errors import ExitStatus, SiteError
from pi_stream.site import load_site, role_vars
from tests.conftest import EXAMPLE_SITES, VIEWER, write_site

CAMERA = {"name": "cam", "source": {"type": "testsrc"}}


def errors_of(directory: Path) -> list[tuple[str, str, str]]:
    with pytest.raises(SiteError) as info:
        load_site(directory)
    assert info.value.status == ExitStatus.INVALID_SITE
    return info.value.problems


def problems_by_path(directory: Path) -> dict[str, str]:
    """Every problem's message under its field path; several for one path are joined."""
    problems: dict[str, str] = {}
    for _, path, message in errors_of(directory):
        problems[path] = problems.get(path, "") + message + "\n"
    return problems


def test_example_site_loads_with_defaults(make_site):
    site = load_site(make_site("testsrc-https"))
    camera = site.cameras[0]
    assert (camera.host, camera.width, camera.height, camera.fps) == ("pi1", 640, 360, 15)
    assert site.web.https and site.web.https_port == 443
    assert site.viewers == ("alice",)
    assert site.public_tcp_ports("pi1") == (22, 80, 443)


def test_invalid_yaml_names_line(tmp_path):
    directory = write_site(tmp_path / "s", {"cameras": [CAMERA]})
    (directory / "site.yml").write_text("cameras:\n  - name: cam\n   source: x\n", encoding="utf-8")
    [(file, path, message)] = errors_of(directory)
    assert file.endswith("site.yml") and "invalid YAML" in message and "line 3" in message


def test_unknown_key_suggests_the_right_one(tmp_path):
    directory = write_site(tmp_path / "s", {"camras": [CAMERA], "cameras": [CAMERA]})
    problems = errors_of(directory)
    assert any(path == "camras" and "did you mean 'cameras'" in msg for _, path, msg in problems)


def test_every_problem_reported_at_once(tmp_path):
    directory = write_site(
        tmp_path / "s",
        {
            "cameras": [
                {"name": "../x", "source": {"type": "testsrc"}},
                {"name": "has space", "source": {"type": "testsrc"}},
                {"name": "ok", "source": {"type": "rtsp", "url": "http://cam/x"}},
                {"name": "ok", "source": {"type": "webcam"}},
            ],
            "web": {"https_port": 70000},
        },
    )
    paths = {path for _, path, _ in errors_of(directory)}
    assert {
        "cameras[0].name",
        "cameras[1].name",
        "cameras[2].source.url",
        "cameras[3].name",
        "cameras[3].source.type",
        "web.https_port",
    } <= paths


def test_duplicate_camera_names_point_at_first_use(tmp_path):
    directory = write_site(tmp_path / "s", {"cameras": [CAMERA, CAMERA]})
    [(_, path, message)] = errors_of(directory)
    assert path == "cameras[1].name" and "cameras[0]" in message


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "missing"),
        ("rtp://192.0.2.1/x", "not an rtsp:// URL"),
        ("rtsp:///path", "has no host"),
        ("rtsp://admin:secret@192.0.2.1/x", "source.username"),
    ],
)
def test_bad_rtsp_urls(tmp_path, url, fragment):
    directory = write_site(tmp_path / "s", {"cameras": [{"name": "c", "source": {"type": "rtsp", "url": url}}]})
    [(_, path, message)] = errors_of(directory)
    assert path == "cameras[0].source.url" and fragment in message
    assert "secret" not in message, "a password typed into a URL must never be echoed"


def test_port_conflicts(tmp_path):
    directory = write_site(
        tmp_path / "s", {"cameras": [CAMERA], "web": {"http_port": 443}, "firewall": {"extra_tcp_ports": [1935]}}
    )
    problems = {path: msg for _, path, msg in errors_of(directory)}
    assert "already used by web.http_port" in problems["web.https_port"]
    assert "RTMP" in problems["firewall.extra_tcp_ports[0]"]


def test_web_port_conflicting_with_ssh(tmp_path):
    directory = write_site(
        tmp_path / "s", {"cameras": [CAMERA], "web": {"http_port": 2222}}, {"pi1": {"ansible_port": 2222}}
    )
    problems = {path: msg for _, path, msg in errors_of(directory)}
    assert "SSH of host pi1" in problems["web.http_port"]


def test_site_without_viewer(tmp_path):
    directory = write_site(tmp_path / "s", {"cameras": [CAMERA]}, viewers=False)
    [(file, _, message)] = errors_of(directory)
    assert file.endswith("viewers.htpasswd") and "pi-stream user add" in message


def test_credentials_readable_by_others_refused(tmp_path):
    directory = write_site(tmp_path / "s", {"cameras": [CAMERA]})
    (directory / "viewers.htpasswd").chmod(0o644)
    [(_, _, message)] = errors_of(directory)
    assert "0644" in message and "chmod 600" in message


def test_several_hosts_need_camera_host(tmp_path):
    directory = write_site(
        tmp_path / "s", {"cameras": [CAMERA, {**CAMERA, "name": "b", "host": "pi9"}]}, {"pi1": {}, "pi2": {}}
    )
    problems = {path: msg for _, path, msg in errors_of(directory)}
    assert "say which one" in problems["cameras[0].host"]
    assert "not in the inventory" in problems["cameras[1].host"]


def test_inventory_problems(tmp_path):
    directory = write_site(tmp_path / "s", {"cameras": [CAMERA]}, {"pi1": {"ansible_port": "ssh"}})
    [(file, path, _)] = errors_of(directory)
    assert file.endswith("inventory.yml") and path == "all.hosts.pi1.ansible_port"


def test_rtsp_credentials_with_any_characters_are_percent_encoded(make_site):
    site = load_site(make_site("mixed-http"))
    door = site.cameras[0]
    assert door.source.ffmpeg_url() == "rtsp://admin:p%40ss%3Aw%2Frd%25%23%21@192.0.2.20:554/Streaming/Channels/101"
    assert not door.source.encodes, "an RTSP camera already sends H.264: remux, do not re-encode"
    assert "p@ss" not in repr(door), "the password must not appear in reprs (logs, tracebacks)"


def test_role_vars_per_host(make_site):
    site = load_site(make_site("two-pis"))
    pi2 = role_vars(site, "pi2")
    assert pi2["camera_capture"]["camera_capture_cameras"] == ["gate"]
    assert pi2["firewall"]["firewall_tcp_ports"] == [2222, 80, 443]
    assert pi2["nginx_rtmp"]["nginx_rtmp_tls_mode"] == "self_signed"


def test_scaffold_is_a_valid_site(tmp_path):
    from pi_stream import credentials
    from pi_stream.scaffold import init_site

    init_site(tmp_path / "mysite", address="192.0.2.5")
    credentials.add_user(tmp_path / "mysite", "bob", "long enough")
    site = load_site(tmp_path / "mysite")
    assert site.cameras[0].source.type == "testsrc" and site.hosts[0].address == "192.0.2.5"
    assert yaml.safe_load((tmp_path / "mysite" / "site.yml").read_text())["name"] == "mysite"


def test_camera_access_and_auth_settings(tmp_path):
    directory = write_site(
        tmp_path / "s",
        {"cameras": [CAMERA, {**CAMERA, "name": "door"}], "viewers": {"alice": {"cameras": ["door"]}},
         "auth": {"session_hours": 2, "link_days": 7}},
    )
    site = load_site(directory)
    assert [c.name for c in site.cameras_for("alice", "pi1")] == ["door"]
    assert (site.auth.session_seconds, site.auth.link_seconds) == (7200, 7 * 86400)


def test_camera_access_errors_name_viewer_camera_and_fix(tmp_path):
    directory = write_site(
        tmp_path / "s",
        {"cameras": [CAMERA], "viewers": {"alice": {"cameras": ["cma"]}, "mallory": {"cameras": ["cam"]}, "bob": {}},
         "auth": {"session_hours": 0}},
    )
    problems = {path: message for _, path, message in errors_of(directory)}
    assert "'cma' is not a camera of this site; cameras: cam" in problems["viewers.alice.cameras[0]"]
    assert "pi-stream user add SITE mallory" in problems["viewers.mallory"]
    assert "leave the viewer out to allow all" in problems["viewers.bob.cameras"]
    assert "out of range" in problems["auth.session_hours"]


def test_old_sha512_hash_names_the_user_and_the_command(tmp_path):
    directory = write_site(tmp_path / "s", {"cameras": [CAMERA]})
    (directory / "viewers.htpasswd").write_text("alice:$6$rounds=10000$salt$" + "x" * 86 + "\n")
    [(file, path, message)] = errors_of(directory)
    assert file.endswith("viewers.htpasswd") and path == "alice"
    assert "not a bcrypt hash" in message and "pi-stream user passwd SITE alice" in message


NVR = {"shed": {"host": "192.0.2.64", "username": "admin", "password": "p@ss word", "path_template": "/ip{channel}/0", "max_sessions": 2}}


def nvr_camera(name: str, channel: int, **extra) -> dict:
    return {"name": name, "source": {"type": "rtsp", "nvr": "shed", "channel": channel}, **extra}


def test_nvr_channels_become_cameras_with_the_nvr_url_and_credentials(tmp_path):
    site = load_site(write_site(tmp_path / "s", {"nvrs": NVR, "cameras": [nvr_camera("dock", 1), nvr_camera("yard", 12)]}))
    dock, yard = site.cameras
    assert dock.source.url == "rtsp://192.0.2.64:554/ip1/0" and yard.source.url == "rtsp://192.0.2.64:554/ip12/0"
    assert dock.source.ffmpeg_url() == "rtsp://admin:p%40ss%20word@192.0.2.64:554/ip1/0"
    assert site.nvrs_on("pi1")[0].max_sessions == 2 and dock.priority == 50
    assert dock.snapshots.interval_seconds == 10 and dock.snapshots.keep_days == 7 and not dock.recording.enabled


def test_cameras_beyond_the_budget_are_named_lowest_priority_first(tmp_path):
    cameras = [nvr_camera("a", 1, priority=10), nvr_camera("b", 2, priority=90), nvr_camera("c", 3), nvr_camera("d", 4, on_demand=True)]
    site = load_site(write_site(tmp_path / "s", {"nvrs": NVR, "cameras": cameras}))
    assert [c.name for c in site.waiting_cameras("pi1")["shed"]] == ["a"], "on-demand cameras hold no session while idle"


def test_nvr_and_storage_mistakes_are_all_reported(tmp_path):
    site = {
        "nvrs": {"shed": {"host": "192.0.2.64", "path_template": "/Streaming/Channels/101", "max_sessions": 0}},
        "storage": {"snapshots_path": "/etc/pi-stream", "min_free_percent": 95},
        "status": {"metrics_allow": ["10.0.0.300"]},
        "cameras": [
            nvr_camera("a", 1, recording={"enabled": True}),
            nvr_camera("b", 1),
            {"name": "c", "source": {"type": "rtsp", "nvr": "barn", "channel": 2}},
            {"name": "d", "source": {"type": "rtsp", "nvr": "shed"}},
            {"name": "e", "source": {"type": "rtsp", "nvr": "shed", "channel": 5, "url": "rtsp://x/y"}},
            {"name": "f", "source": {"type": "testsrc"}, "recording": {"enabled": True}, "transcode": True},
        ],
    }
    problems = problems_by_path(write_site(tmp_path / "s", site))
    assert "{channel}" in problems["nvrs.shed.path_template"]
    assert "out of range" in problems["nvrs.shed.max_sessions"]
    assert "system directory" in problems["storage.snapshots_path"]
    assert "out of range" in problems["storage.min_free_percent"]
    assert "not an address" in problems["status.metrics_allow[0]"]
    assert "never written to the SD card" in problems["cameras[0].recording.enabled"]
    assert "already cameras[0]" in problems["cameras[1].source.channel"]
    assert "'barn' is not in nvrs; known: shed" in problems["cameras[2].source.nvr"]
    assert "missing" in problems["cameras[3].source.channel"]
    assert "either an nvr and channel or its own url" in problems["cameras[4].source.url"]
    assert "encoded twice" in problems["cameras[5].recording.enabled"]
    assert "only RTSP sources" in problems["cameras[5].transcode"]


def test_storage_dirs_follow_what_the_cameras_keep(make_site):
    site = load_site(make_site("nvr"))
    assert role_vars(site, "pi1")["camera_capture"]["camera_capture_storage_dirs"] == ["/srv/pi-stream/snapshots", "/mnt/usb/pi-stream"]
    assert site.metrics_allow == ("192.0.2.0/24",)


def test_dvr_proxy_takes_the_presets_ports_and_opens_them(make_site):
    site = load_site(make_site("dvr"))
    shed, office = site.dvrs
    assert (shed.http_port, [(w.tls, w.plain) for w in shed.websocket_ports], shed.https_port) == (80, [(7682, 7681)], 443)
    assert shed.viewer_auth and shed.viewers == ("alice",) and shed.cache_mb == 256
    assert "/ISAPI/Security/userCheck" in shed.login_paths
    assert (office.ip_family, office.login_paths, office.cache_mb) == ("ip6", ("/api/login",), 0)
    assert site.public_tcp_ports("pi1") == (22, 80, 443, 7682, 8443, 9443)
    values = role_vars(site, "pi1")
    assert values["dvr_proxy"] == {"dvr_proxy_cached": ["shed"]}
    assert values["nginx_rtmp"]["nginx_rtmp_tls_alt_names"] == ["dvr.example.org"]


def test_dvr_proxy_mistakes_are_all_reported_with_the_fix(tmp_path):
    directory = write_site(
        tmp_path / "s",
        {
            "web": {"https": False},
            "cameras": [CAMERA],
            "dvr_proxy": {
                "shed": {"host": "dvr.local", "viewers": ["alice"], "websocket_ports": [{"tls": 7682}]},
                "Barn": {"host": "192.0.2.65", "server_name": "dvr.example.org", "https_port": 22},
            },
        },
    )
    problems = problems_by_path(directory)
    assert "web.https: true" in problems["dvr_proxy.shed"]
    assert "is not an IP address" in problems["dvr_proxy.shed.host"]
    assert "only with viewer_auth: true" in problems["dvr_proxy.shed.viewers"]
    assert "plain" in problems["dvr_proxy.shed.websocket_ports[0].plain"]
    assert "not a valid DVR name" in problems["dvr_proxy.Barn"]
    assert "SSH of host pi1" in problems["dvr_proxy.Barn.https_port"]


def test_dvrs_share_tls_ports_only_by_name(tmp_path):
    site = {"cameras": [CAMERA], "dvr_proxy": {
        "a": {"host": "192.0.2.64", "server_name": "a.example.org"},
        "b": {"host": "192.0.2.65", "server_name": "b.example.org"},
    }}  # fmt: skip
    assert [d.server_name for d in load_site(write_site(tmp_path / "ok", site)).dvrs] == ["a.example.org", "b.example.org"]
    site["dvr_proxy"]["b"] = {"host": "192.0.2.65", "https_port": 8443}
    problems = {path: msg for _, path, msg in errors_of(write_site(tmp_path / "clash", site))}
    assert problems == {
        "dvr_proxy.b.websocket_ports[0].tls": "port 7682 is already used by dvr_proxy.a.websocket_ports[0].tls; choose another port"
    }
    site["dvr_proxy"]["b"] = {"host": "192.0.2.65"}
    problems = {path: msg for _, path, msg in errors_of(write_site(tmp_path / "unnamed", site))}
    assert "give it a DNS name of its own" in problems["dvr_proxy.b.server_name"]


def test_security_updates_are_on_by_default_with_a_nightly_reboot(make_site):
    site = load_site(make_site())
    assert (site.updates.security, site.updates.time, site.updates.reboot) == (True, "04:00", True)
    assert role_vars(site, "pi1")["security_updates"] == {"security_updates_enabled": True}


def test_update_policy_mistakes_name_the_field_and_the_fix(tmp_path):
    directory = write_site(tmp_path / "s", {"cameras": [CAMERA], "updates": {"security": "yes", "time": "4am", "reboots": True}})
    problems = problems_by_path(directory)
    assert "true or false" in problems["updates.security"]
    assert '"04:00"' in problems["updates.time"]
    assert "did you mean 'reboot'" in problems["updates.reboots"]
    # Unquoted, YAML 1.1 reads 4:00 as sexagesimal 240 (04:00 stays a string): the message says to quote it.
    (directory / "site.yml").write_text("cameras: [{name: cam, source: {type: testsrc}}]\nupdates: {time: 4:00}\n")
    assert "put the value in quotes" in problems_by_path(directory)["updates.time"]


def test_deploy_says_what_turning_updates_off_means(tmp_path):
    from pi_stream.site import update_notes

    off = load_site(write_site(tmp_path / "off", {"cameras": [CAMERA], "updates": {"security": False}})).updates
    no_reboot = load_site(write_site(tmp_path / "nr", {"cameras": [CAMERA], "updates": {"reboot": False}})).updates
    assert "installs no security updates" in update_notes(off)[0]
    assert "stays inactive until you reboot" in update_notes(no_reboot)[0]
    assert update_notes(load_site(write_site(tmp_path / "on", {"cameras": [CAMERA]})).updates) == []


# --- webrtc: -------------------------------------------------------------------------


def test_webrtc_defaults_offer_every_camera_through_the_pis_own_address(tmp_path):
    site = load_site(write_site(tmp_path / "s", {"cameras": [CAMERA], "webrtc": {}}))
    assert site.webrtc.cameras == ("cam",) and site.webrtc.relay_port == 3478 and site.webrtc.install_method == "source"
    assert site.webrtc.relay_address(site.host("pi1")) == "192.0.2.10"
    assert site.public_tcp_ports("pi1") == (22, 80, 443, 3478)
    assert load_site(write_site(tmp_path / "t", {"cameras": [CAMERA]})).webrtc is None


def test_webrtc_mistakes_are_reported_at_once_with_their_fields(tmp_path):
    directory = write_site(tmp_path / "s", {
        "cameras": [CAMERA],
        "webrtc": {"engine": "janus", "cameras": ["cam", "nope", "cam"], "public_address": "http://cam.example.org",
                   "relay_port": 443, "install_method": "container", "image": "airensoft/ovenmediaengine:latest"},
    })
    problems = problems_by_path(directory)
    assert "not one of: ome" in problems["webrtc.engine"]
    assert "'nope' is not a camera of this site (cameras: cam)" in problems["webrtc.cameras[1]"]
    assert "listed twice" in problems["webrtc.cameras[2]"]
    assert "not an IP address or DNS name" in problems["webrtc.public_address"]
    assert "port 443 is already used by web.https_port" in problems["webrtc.relay_port"]
    assert "not pinned by digest" in problems["webrtc.image"]


def test_webrtc_container_needs_an_image_and_an_empty_camera_list_is_refused(tmp_path):
    directory = write_site(tmp_path / "s", {"cameras": [CAMERA], "webrtc": {"install_method": "container", "cameras": []}})
    problems = problems_by_path(directory)
    assert "required with install_method: container" in problems["webrtc.image"]
    assert "empty: list the cameras" in problems["webrtc.cameras"]


def test_webrtc_internal_ports_are_taken(tmp_path):
    directory = write_site(tmp_path / "s", {"cameras": [CAMERA], "webrtc": {}, "firewall": {"extra_tcp_ports": [3333]}})
    assert "already used by OvenMediaEngine (internal, port 3333)" in problems_by_path(directory)["firewall.extra_tcp_ports[0]"]


def test_webrtc_source_builds_optimized_unless_told_and_optimize_must_be_a_boolean(tmp_path):
    assert load_site(write_site(tmp_path / "s", {"cameras": [CAMERA], "webrtc": {}})).webrtc.source.optimize is True
    quick = load_site(write_site(tmp_path / "q", {"cameras": [CAMERA], "webrtc": {"source": {"optimize": False}}}))
    assert quick.webrtc.source.optimize is False
    directory = write_site(tmp_path / "w", {"cameras": [CAMERA], "webrtc": {"source": {"optimize": "fast"}}})
    assert "webrtc.source.optimize" in problems_by_path(directory)


def test_webrtc_takes_no_on_demand_camera(tmp_path):
    nvr = {"hall": {"host": "192.0.2.50", "username": "u", "password": "p", "path_template": "/ch{channel}"}}
    cameras = [{"name": "gate", "source": {"type": "rtsp", "nvr": "hall", "channel": 1}},
               {"name": "shed", "on_demand": True, "source": {"type": "rtsp", "nvr": "hall", "channel": 2}}]
    by_default = load_site(write_site(tmp_path / "s", {"nvrs": nvr, "cameras": cameras, "webrtc": {}}))
    assert by_default.webrtc.cameras == ("gate",), "the default leaves the on-demand camera to HLS"
    directory = write_site(tmp_path / "t", {"nvrs": nvr, "cameras": cameras, "webrtc": {"cameras": ["gate", "shed"]}})
    assert "'shed' is on_demand" in problems_by_path(directory)["webrtc.cameras[1]"]


# --- topology and relays ------------------------------------------------------------

RELAY_HOSTS = {
    "pi1": {"ansible_host": "192.168.1.10"},
    "pi_stream_relays": {"hosts": {"relay1": {"ansible_host": "203.0.113.10"}, "relay2": {"ansible_host": "not a name!"}}},
}
A_CAMERA = [{"name": "porch", "source": {"type": "testsrc"}}]


def test_relay_mistakes_are_reported_at_once_with_their_fix(tmp_path):
    site = {
        "cameras": A_CAMERA,
        "topology": "relay",
        "web": {"https": False},
        "relay": {
            "relays": [{"host": "relay1", "url": "http://cams.example.org"}, {"host": "pi1"}, {"host": "relay1"}],
            "tunnel_subnet": "8.8.8.0/24",
        },
    }
    problems = problems_by_path(write_site(tmp_path / "s", site, RELAY_HOSTS))
    assert "relays face the internet: set web.https: true" in problems["topology"]
    assert "is not an origin like https://" in problems["relay.relays[0].url"]
    assert "not a host of the inventory group pi_stream_relays (relays there: relay1, relay2)" in problems["relay.relays[1].host"]
    assert "listed twice" in problems["relay.relays[2].host"]
    assert "not a private network" in problems["relay.tunnel_subnet"]
    assert "the inventory's relay relay2 is not listed here" in problems["relay.relays"]


def test_topology_port_forward_needs_https_and_lan_takes_no_relay_section(tmp_path):
    problems = problems_by_path(write_site(tmp_path / "a", {"cameras": A_CAMERA, "topology": "port_forward", "web": {"https": False}}))
    assert "set web.https: true" in problems["topology"]
    problems = problems_by_path(write_site(tmp_path / "b", {"cameras": A_CAMERA, "relay": {"relays": [{"host": "x"}]}}))
    assert "topology: relay only (the site says lan)" in problems["relay"]
    problems = problems_by_path(write_site(tmp_path / "c", {"cameras": A_CAMERA, "topology": "cloud"}))
    assert "'cloud' is not one of: lan, port_forward, relay" in problems["topology"]


def test_a_relay_in_two_groups_is_refused(tmp_path):
    hosts = {"pi1": {"ansible_host": "192.0.2.10"}, "pi_stream_relays": {"hosts": {"pi1": {"ansible_host": "192.0.2.10"}}}}
    problems = problems_by_path(write_site(tmp_path / "s", {"cameras": A_CAMERA, "topology": "relay",
                                                            "relay": {"relays": [{"host": "pi1"}]}}, hosts))
    assert "a relay is never also an appliance" in problems["all.children.pi_stream_relays.hosts.pi1"]


def test_relay_site_model(make_site):
    site = load_site(make_site("relay"))
    assert [h.name for h in site.hosts] == ["pi1"] and [h.name for h in site.relays] == ["relay1", "relay2"]
    assert [r.url for r in site.remote.relays] == ["https://cams.example.org", "https://198.51.100.20"]
    assert (site.tunnel_address("relay1"), site.tunnel_address("relay2"), site.tunnel_address("pi1")) == ("10.77.0.1", "10.77.0.2", "10.77.0.10")
    assert site.remote.service_address == "10.77.0.254"
    assert [c.name for c in site.relay_cameras()] == ["porch"], "the on-demand camera stays on the LAN"
    assert site.public_udp_ports("relay1") == (51820,) and site.public_udp_ports("pi1") == ()
    assert site.open_tcp_ports("pi1") == (22,) and site.private_tcp_ports("pi1") == (80, 443, 9443, 7682)
    assert site.open_tcp_ports("relay1") == (22, 80, 443, 8443, 9443, 7682), "and the routes to the Pi (relay.admins)"


def test_viewers_named_in_dvr_proxy_and_relay_admins_must_exist(tmp_path):
    """Both lists are checked against viewers.htpasswd the same way: each unknown name at its index, with the fix."""
    site, hosts = EXAMPLE_SITES["relay"]
    relay = {**site["relay"], "admins": [VIEWER, "zed", VIEWER]}
    dvr_proxy = {"barn": {**site["dvr_proxy"]["barn"], "viewers": ["ghost", VIEWER]}}
    directory = write_site(tmp_path / "s", {**site, "relay": relay, "dvr_proxy": dvr_proxy}, hosts)
    problems = problems_by_path(directory)
    assert problems["relay.admins[1]"] == "no viewer 'zed' in viewers.htpasswd; add it with `pi-stream user add SITE zed`\n"
    assert problems["dvr_proxy.barn.viewers[0]"] == "no viewer 'ghost' in viewers.htpasswd; add it with `pi-stream user add SITE ghost`\n"
    assert not [path for path in problems if path.startswith(("relay.admins[0]", "relay.admins[2]", "dvr_proxy.barn.viewers[1]"))]


def test_a_port_a_relay_publishes_twice_is_reported_at_the_field_that_took_it_second(tmp_path):
    """On a relay, a Pi's own pages (relay.admin_port) and the DVRs it proxies share one set of ports; a DVR
    whose login path is the Pi's own is still a DVR (a route is told by what made it, not by its paths)."""
    site, hosts = EXAMPLE_SITES["relay"]
    barn = {**site["dvr_proxy"]["barn"], "login_paths": ["/auth/login"]}
    barn_port = barn["https_port"]
    directory = write_site(tmp_path / "s", {**site, "relay": {**site["relay"], "admin_port": barn_port},
                                            "dvr_proxy": {"barn": barn}}, hosts)
    problems = problems_by_path(directory)
    assert problems["dvr_proxy.barn"] == (
        f"port {barn_port} on relay relay1 is already used by relay.admin_port; choose another port\n"
        f"port {barn_port} on relay relay2 is already used by relay.admin_port; choose another port\n"
    )
