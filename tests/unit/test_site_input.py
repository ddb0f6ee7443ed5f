"""What the site model takes from its files, byte for byte: no control character in a value, YAML without
duplicate keys or runaway nesting, and a site.yml holding secrets kept from other users.

Findings of the security review: a trailing newline passed every pattern (`re.match` and `$`), a second
`cameras:` block silently replaced the first, YAML nested thousands deep ended in a traceback, and site.yml
held NVR passwords at 0644 with nothing said.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pi_stream import credentials
from pi_stream.errors import ExitStatus, SiteError
from pi_stream.site import load_site
from tests.conftest import EXAMPLE_SITES, VIEWER, write_public_keys, write_site

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BUILDERS = {"pi_stream_builders": {"hosts": {"builder1": {"ansible_host": "192.0.2.50", "ansible_user": "build"}}}}

# Between them, every string field site.yml has (the examples and conftest's sites add more of the same).
FULL_SITES: dict[str, tuple[dict, dict]] = {
    "everything": (
        {
            "name": "full",
            "topology": "lan",
            "web": {"server_name": "cam.example.org", "certificate": "tls/cert.pem", "certificate_key": "tls/key.pem",
                    "cors_origins": ["https://dash.example.org"]},
            "encoder": {"candidates": ["h264_v4l2m2m", "libx264"]},
            "nginx": {"install_method": "source", "source": {
                "nginx": {"version": "1.26.3", "url": "https://example.org/nginx-1.26.3.tar.gz", "sha256": "a" * 64},
                "rtmp_module": {"version": "1.2.2", "file": "rtmp.tar.gz", "sha256": "b" * 64},
                "rtmp_module_link": "dynamic", "build_host": "builder1"}},
            "nvrs": {"shed": {"host": "192.0.2.64", "username": "admin", "password": "nvr password", "path_template": "/ip{channel}/0"}},
            "storage": {"snapshots_path": "/srv/snaps", "recordings_path": "/mnt/usb/pi-stream"},
            "status": {"metrics_allow": ["192.0.2.0/24"]},
            "updates": {"time": "03:30"},
            "cameras": [
                {"name": "dock", "host": "pi1", "title": "Dock", "source": {"type": "rtsp", "nvr": "shed", "channel": 1},
                 "recording": {"enabled": True}},
                {"name": "door", "source": {"type": "rtsp", "url": "rtsp://192.0.2.20/x", "username": "cam", "password": "cam password"}},
                {"name": "desk", "source": {"type": "v4l2", "device": "/dev/video0", "input_format": "mjpeg"}},
            ],
            "viewers": {VIEWER: {"cameras": ["dock"]}},
            "dvr_proxy": {"office": {"host": "192.0.2.99", "pi": "pi1", "preset": "generic", "server_name": "dvr.example.org",
                                     "login_paths": ["/api/login"], "viewer_auth": True, "viewers": [VIEWER]}},
            "webrtc": {"engine": "ome", "cameras": ["dock"], "public_address": "cam.example.org", "install_method": "container",
                       "image": "docker.io/airensoft/ovenmediaengine@sha256:" + "c" * 64,
                       "source": {"build_host": "builder1",
                                  "ome": {"version": "0.19.0", "url": "https://example.org/ome.tar.gz", "sha256": "d" * 64}}},
        },
        {"pi1": {"ansible_host": "192.0.2.10", "ansible_user": "pi"}, **BUILDERS},
    ),
    "relay-subnet": (
        {
            "name": "cabin",
            "topology": "relay",
            "relay": {"tunnel_subnet": "10.78.0.0/24", "relays": [{"host": "relay1", "url": "https://cams.example.org"}],
                      "admins": [VIEWER]},
            "cameras": [{"name": "porch", "source": {"type": "testsrc"}}],
        },
        {"pi1": {"ansible_host": "192.168.1.10"}, "pi_stream_relays": {"hosts": {"relay1": {"ansible_host": "203.0.113.10"}}}},
    ),
}


def full_site(directory: Path, name: str) -> Path:
    site, hosts = {**EXAMPLE_SITES, **FULL_SITES}[name]
    write_site(directory, site, hosts)
    (directory / "tls").mkdir(exist_ok=True)
    for file in ("tls/cert.pem", "tls/key.pem", "rtmp.tar.gz"):
        (directory / file).write_text("placeholder\n", encoding="utf-8")
    return directory


def example_site(directory: Path, topology: str) -> Path:
    shutil.copytree(EXAMPLES / topology, directory)
    credentials.add_user(directory, VIEWER, "correct horse battery")
    if topology == "relay":
        write_public_keys(directory, ["pi1", "relay1", "relay2"])
    return directory


SITES = [*(f"examples/{t}" for t in ("lan", "port_forward", "relay")), *EXAMPLE_SITES, *FULL_SITES]


def make(tmp_path: Path, which: str) -> Path:
    if which.startswith("examples/"):
        return example_site(tmp_path / "site", which.removeprefix("examples/"))
    return full_site(tmp_path / "site", which)


def string_leaves(data: Any, path: str = "") -> Iterator[tuple[str, list]]:
    """(field path as the model writes it, the keys and indexes to reach it) of every string value."""

    def walk(node: Any, path: str, keys: list) -> Iterator[tuple[str, list]]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, f"{path}.{key}" if path else str(key), [*keys, key])
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, f"{path}[{i}]", [*keys, i])
        elif isinstance(node, str):
            yield path, keys

    yield from walk(data, path, [])


def with_leaf(data: Any, keys: list, suffix: str) -> Any:
    copy = yaml.safe_load(yaml.safe_dump(data))
    node = copy
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] += suffix
    return copy


def problems_of(directory: Path) -> dict[str, str]:
    try:
        load_site(directory)
    except SiteError as exc:
        assert exc.status == ExitStatus.INVALID_SITE
        found: dict[str, str] = {}
        for _, path, message in exc.problems:
            found[path] = found.get(path, "") + message + "\n"
        return found
    return {}


@pytest.mark.parametrize("which", SITES)
@pytest.mark.parametrize("file", ["site.yml", "inventory.yml"])
def test_a_trailing_newline_in_any_string_is_an_error_at_that_field(tmp_path, which, file):
    """Every string leaf of a site that loads, in turn with a "\\n" after it, is refused at exactly its field path."""
    directory = make(tmp_path, which)
    load_site(directory)
    original = yaml.safe_load((directory / file).read_text(encoding="utf-8"))
    leaves = list(string_leaves(original))
    assert leaves
    missed = []
    for path, keys in leaves:
        (directory / file).write_text(yaml.safe_dump(with_leaf(original, keys, "\n"), sort_keys=False), encoding="utf-8")
        message = problems_of(directory).get(path, "")
        if "line break" not in message and "\\n" not in message:
            missed.append(path)
    assert missed == [], f"{which}/{file}: a trailing newline got through at these fields"


def problems_of_list(directory: Path) -> list[tuple[str, str, str]]:
    with pytest.raises(SiteError) as info:
        load_site(directory)
    return info.value.problems


def test_the_reviews_example_a_camera_named_cama_newline(tmp_path):
    directory = write_site(tmp_path / "s", {"cameras": [{"name": "cama\n", "source": {"type": "testsrc"}}]})
    [(file, path, message)] = problems_of_list(directory)
    assert (Path(file).name, path) == ("site.yml", "cameras[0].name")
    assert "line break" in message and "at the end" in message and "remove it" in message


@pytest.mark.parametrize("character", ["\r", "\x00", "\t", "\x1b", "\x7f", "\x85", "\u2028"])
def test_a_control_character_inside_a_password_is_refused_without_printing_it(tmp_path, character):
    secret = f"hunter{character}2"
    site = {"cameras": [{"name": "door", "source": {"type": "rtsp", "url": "rtsp://192.0.2.20/x", "username": "u", "password": secret}}]}
    directory = write_site(tmp_path / "s", site)
    [(_, path, message)] = problems_of_list(directory)
    assert path == "cameras[0].source.password"
    assert "at character 7 of 8" in message and "remove it" in message
    assert "hunter" not in message, "the password itself is never printed"


def test_a_control_character_in_a_key_is_shown_escaped_on_one_line(tmp_path):
    """A name that is a mapping key (an NVR's) gets the error at its path, and the path does not break the line."""
    site = {"nvrs": {"shed\n": {"host": "192.0.2.64"}}, "cameras": [{"name": "cam", "source": {"type": "testsrc"}}]}
    directory = write_site(tmp_path / "s", site)
    problems = problems_of_list(directory)
    assert [path for _, path, _ in problems] == ["nvrs.shed\\n"]
    assert "\n" not in str(SiteError(problems))


def test_a_host_name_with_a_trailing_newline_is_refused(tmp_path):
    directory = write_site(tmp_path / "s", {"cameras": [{"name": "cam", "source": {"type": "testsrc"}}]},
                           {"pi1\n": {"ansible_host": "192.0.2.10"}})
    paths = [path for _, path, _ in problems_of_list(directory)]
    assert "all.hosts.pi1\\n" in paths


def test_text_is_still_free_where_it_is_text(tmp_path):
    """Spaces, quotes, non-ASCII and punctuation in titles and passwords stay allowed: only control characters are not."""
    site = {"cameras": [{"name": "door", "title": "Vordertür «Hof» & 'Tor' <1>",
                         "source": {"type": "rtsp", "url": "rtsp://192.0.2.20/x", "username": "admin", "password": " p@ss:w/rd%#! é "}}]}
    camera = load_site(write_site(tmp_path / "s", site)).cameras[0]
    assert camera.title == "Vordertür «Hof» & 'Tor' <1>" and camera.source.password == " p@ss:w/rd%#! é "


# --- YAML: duplicate keys and nesting -------------------------------------------------------------------------------

FOUR_CAMERAS = """\
name: shop
topology: lan
cameras:
  - {name: door, source: {type: testsrc}}
  - {name: yard, source: {type: testsrc}}
  - {name: desk, source: {type: testsrc}}
  - {name: gate, source: {type: testsrc}}
web:
  https: true
hls: {fragment_seconds: 1}
# later, pasted from another site:
cameras:
  - {name: hall, source: {type: testsrc}}
"""


def one_site_error(directory: Path) -> str:
    [(file, path, message)] = problems_of_list(directory)
    assert path == ""
    return f"{Path(file).name}: {message}"


def test_a_second_cameras_block_is_an_error_naming_both_lines(tmp_path):
    """Found by the review: four cameras became one, and load said nothing."""
    directory = write_site(tmp_path / "s", {"cameras": [{"name": "x", "source": {"type": "testsrc"}}]})
    (directory / "site.yml").write_text(FOUR_CAMERAS, encoding="utf-8")
    message = one_site_error(directory)
    assert "site.yml: invalid YAML: line 12, column 1: duplicate key 'cameras' (first at line 3)" in message
    assert "merge the two" in message


@pytest.mark.parametrize(("text", "line", "first"), [
    ("cameras:\n  - name: door\n    source: {type: testsrc}\n    name: yard\n", 4, 2),  # inside a camera
    ("cameras: [{name: door, name: yard, source: {type: testsrc}}]\n", 1, 1),  # both on one line
    ("true: 1\nyes: 2\ncameras: []\n", 2, 1),  # two spellings of one key (YAML 1.1 reads both as true)
], ids=["in-a-camera", "on-one-line", "true-and-yes"])
def test_a_duplicate_key_at_any_depth_is_an_error(tmp_path, text, line, first):
    directory = write_site(tmp_path / "s", {"cameras": [{"name": "x", "source": {"type": "testsrc"}}]})
    (directory / "site.yml").write_text(text, encoding="utf-8")
    message = one_site_error(directory)
    assert f"line {line}, column" in message and f"(first at line {first})" in message


def test_a_duplicate_host_in_the_inventory_is_an_error(tmp_path):
    directory = write_site(tmp_path / "s", {"cameras": [{"name": "x", "source": {"type": "testsrc"}}]})
    (directory / "inventory.yml").write_text(
        "all:\n  hosts:\n    pi1: {ansible_host: 192.0.2.10}\n    pi1: {ansible_host: 192.0.2.11}\n", encoding="utf-8")
    assert "inventory.yml: invalid YAML: line 4, column 5: duplicate key 'pi1' (first at line 3)" in one_site_error(directory)


def test_a_merge_key_may_still_be_overridden(tmp_path):
    """`<<: *defaults` and then a key of the mapping's own is YAML's override, not a duplicate."""
    text = """\
defaults: &camera {source: {type: testsrc}, fps: 10}
cameras:
  - <<: *camera
    name: door
    fps: 5
"""
    directory = write_site(tmp_path / "s", {"cameras": [{"name": "x", "source": {"type": "testsrc"}}]})
    (directory / "site.yml").write_text(text, encoding="utf-8")
    [(_, path, _)] = problems_of_list(directory)
    assert path == "defaults", "only the unknown key, no duplicate"


DEEP = {
    "flow": "name: deep\ncameras: " + "[" * 5000 + "]" * 5000 + "\n",
    "block": "".join("  " * i + f"level{i}:\n" for i in range(3000)),
    # Each alias nests the one before without any indent: deep data from a short, flat file.
    "aliases": "chain0: &chain0 [1]\n" + "".join(f"chain{i}: &chain{i} [*chain{i - 1}]\n" for i in range(1, 3000)),
    "itself": "cameras: &all [*all]\n",
}


@pytest.mark.parametrize("shape", sorted(DEEP))
def test_yaml_nested_thousands_deep_is_one_error_not_a_traceback(tmp_path, shape):
    directory = write_site(tmp_path / "s", {"cameras": [{"name": "x", "source": {"type": "testsrc"}}]})
    (directory / "site.yml").write_text(DEEP[shape], encoding="utf-8")
    message = one_site_error(directory)
    assert "site.yml: invalid YAML: line" in message
    assert "nested more than 100 levels deep" in message or "contain itself" in message


def test_nesting_up_to_the_limit_still_reads(tmp_path):
    from pi_stream.site import read_yaml
    from pi_stream.site.fields import Problems
    from pi_stream.site.files import MAX_NESTING

    path = tmp_path / "deep.yml"
    path.write_text("[" * MAX_NESTING + "]" * MAX_NESTING + "\n", encoding="utf-8")
    problems = Problems()
    data = read_yaml(path, problems)
    assert problems.items == [] and isinstance(data, list)
    path.write_text("[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1) + "\n", encoding="utf-8")
    assert read_yaml(path, problems) is None and len(problems.items) == 1


@pytest.mark.parametrize(("file", "text", "says"), [
    ("site.yml", FOUR_CAMERAS, "duplicate key 'cameras' (first at line 3)"),
    ("site.yml", DEEP["flow"], "nested more than 100 levels deep"),
    ("inventory.yml", "all:\n  hosts: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "nested more than 100 levels deep"),
], ids=["duplicate-cameras", "deep-site", "deep-inventory"])
def test_bad_yaml_through_the_command_is_one_line_and_exit_3(tmp_path, monkeypatch, capsys, file, text, says):
    from tests.unit.test_cli import broken_site, run_cli

    site = broken_site(tmp_path, monkeypatch, capsys)
    (site / file).write_text(text, encoding="utf-8")
    status, _, err = run_cli(["render", str(site), "-o", str(tmp_path / "o")], monkeypatch, capsys)
    assert status == ExitStatus.INVALID_SITE, err
    assert "Traceback" not in err and "RecursionError" not in err
    assert err.count("\n") == 1 and err.startswith(f"error: {site / file}: invalid YAML: line ") and says in err, err


# --- site.yml's passwords and its permissions -------------------------------------------------------------------------

NVR_SITE = EXAMPLE_SITES["nvr"][0]
NVR_PASSWORD = NVR_SITE["nvrs"]["shed"]["password"]
CAMERA_PASSWORD = EXAMPLE_SITES["mixed-http"][0]["cameras"][0]["source"]["password"]


def test_init_writes_site_yml_for_the_owner_only(tmp_path):
    from pi_stream.scaffold import init_site

    site_yml, inventory = init_site(tmp_path / "s")
    assert oct(site_yml.stat().st_mode & 0o777) == "0o600", "site.yml is where NVR and camera passwords go"
    init_site(tmp_path / "s", force=True)
    assert oct(site_yml.stat().st_mode & 0o777) == "0o600", "--force too"


def test_passwords_in_a_site_yml_others_can_read_are_named_with_the_fix(tmp_path):
    site = {**NVR_SITE, "cameras": [*NVR_SITE["cameras"], EXAMPLE_SITES["mixed-http"][0]["cameras"][0]]}
    directory = write_site(tmp_path / "s", site)
    (directory / "site.yml").chmod(0o640)
    [note] = load_site(directory).notes
    site_yml = directory / "site.yml"
    assert note == (f"{site_yml} holds passwords (nvrs.shed.password, cameras[5].source.password) and its permissions are "
                    f"0640, so other users of this computer can read them: run `chmod 600 {site_yml}`")
    assert NVR_PASSWORD not in note and CAMERA_PASSWORD not in note
    site_yml.chmod(0o600)
    assert load_site(directory).notes == ()


def test_a_site_yml_without_passwords_may_be_readable(tmp_path):
    directory = write_site(tmp_path / "s", {"cameras": [{"name": "x", "source": {"type": "rtsp", "url": "rtsp://192.0.2.9/x",
                                                                               "username": "viewer-only"}}]})
    (directory / "site.yml").chmod(0o644)
    assert load_site(directory).notes == ()


def test_the_command_warns_once_and_still_renders(tmp_path, monkeypatch, capsys):
    """A warning, not an error: a site.yml from before init wrote 0600, or from a git checkout, still deploys."""
    from tests.unit.test_cli import run_cli

    directory = write_site(tmp_path / "s", NVR_SITE)
    (directory / "site.yml").chmod(0o644)
    status, out, err = run_cli(["render", str(directory), "-o", str(tmp_path / "o")], monkeypatch, capsys)
    assert status == ExitStatus.OK and "rendered" in out
    [line] = err.splitlines()
    assert line.startswith(f"warning: {directory / 'site.yml'} holds passwords (nvrs.shed.password)")
    assert f"chmod 600 {directory / 'site.yml'}" in line and "0644" in line
    assert NVR_PASSWORD not in out + err
