"""WebRTC rendered: OME's Server.xml checked against OME's own config items, nginx's push and signalling proxy, the firewall.

The sites: the example `webrtc` (port-forwarded, three cameras, two offered over
WebRTC, an NVR password full of XML's special characters), a LAN-only site, 16
cameras, two Pis of which only one offers WebRTC, and a transcoded H.265 camera.
"""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET

import pytest

from pi_stream.render import render_site
from pi_stream.site import load_site
from tests.conftest import write_site
from tests.configs.ome_schema import check
from tests.configs.test_ome_schema import TARBALL
from tests.configs.tree import install_bundle, install_tree, rooted_paths

SERVER_XML = "etc/ovenmediaengine/Server.xml"
OME_FILES = ("etc/ovenmediaengine/Server.xml", "etc/ovenmediaengine/Logger.xml", "etc/systemd/system/pi-stream-ome.service")


@pytest.fixture(scope="module")
def ome_schema():
    if not TARBALL.is_file():
        pytest.skip(f"OME's source tarball is not at {TARBALL} (set PI_STREAM_OME_TARBALL)")
    from tests.configs.ome_schema import load_schema

    return load_schema(TARBALL)


def rendered(directory) -> dict[str, dict[str, str]]:
    bundle = render_site(load_site(directory))
    return {host: {target: f.content.decode() for target, f in files.items()} for host, files in bundle.items()}


def relay_of(server_xml: str) -> str:
    return ET.fromstring(server_xml).findtext("Bind/Publishers/WebRTC/IceCandidates/TcpRelay")


def pushed(rtmp_conf: str) -> list[str]:
    return re.findall(r"push rtmp://127\.0\.0\.1:1940/pi-stream name=([a-z0-9_-]+);", rtmp_conf)


def test_port_forwarded_site_relays_through_the_public_name(make_site, ome_schema):
    files = rendered(make_site("webrtc"))["pi1"]
    assert check(files[SERVER_XML], ome_schema) == []
    assert relay_of(files[SERVER_XML]) == "cam.example.org:3478"
    assert pushed(files["etc/nginx/pi-stream/rtmp.conf"]) == ["gate", "drive"]
    http = files["etc/nginx/pi-stream/http.conf"]
    assert '"^/webrtc/(?<pi_stream_camera>gate|drive)/$"' in http and "yard" not in http.split("/webrtc/")[1].split("}")[0]
    assert "tcp dport { 22, 80, 443, 3478 } accept" in files["etc/pi-stream/firewall.nft"]


def test_no_camera_credential_reaches_omes_files(make_site):
    """OME takes the stream from nginx: the NVR's password (& < > " ' !) is in no OME file, escaped or not."""
    files = rendered(make_site("webrtc"))["pi1"]
    for target in OME_FILES:
        assert "p&ss" not in files[target] and "p&amp;ss" not in files[target] and "192.0.2.30" not in files[target]
    ET.fromstring(files[SERVER_XML])  # well-formed


def test_lan_only_site_relays_through_the_pis_own_address(make_site, ome_schema):
    files = rendered(make_site("webrtc", webrtc={"cameras": ["drive"]}))["pi1"]
    assert check(files[SERVER_XML], ome_schema) == []
    assert relay_of(files[SERVER_XML]) == "192.0.2.10:3478"
    assert pushed(files["etc/nginx/pi-stream/rtmp.conf"]) == ["drive"]


def test_sixteen_cameras_are_one_application_and_sixteen_pushes(tmp_path, ome_schema, short_root):
    cameras = [{"name": f"cam{n:02d}", "source": {"type": "testsrc"}, "width": 320, "height": 180, "fps": 5} for n in range(16)]
    directory = write_site(tmp_path / "sixteen", {"name": "yard", "cameras": cameras, "webrtc": {"relay_port": 3479}})
    site = load_site(directory)
    files = render_site(site, rooted_paths(short_root))["pi1"]
    server_xml = files[SERVER_XML].content.decode()
    assert check(server_xml, ome_schema) == []
    assert relay_of(server_xml) == "192.0.2.10:3479"
    assert len(ET.fromstring(server_xml).findall("VirtualHosts/VirtualHost/Applications/Application")) == 1
    assert pushed(files["etc/nginx/pi-stream/rtmp.conf"].content.decode()) == [c["name"] for c in cameras]
    install_bundle(short_root, files)
    nginx_t(short_root, directory)


def test_only_the_pi_with_webrtc_cameras_runs_ome(tmp_path):
    site = {
        "name": "farm",
        "cameras": [{"name": "barn", "host": "pi1", "source": {"type": "testsrc"}},
                    {"name": "gate", "host": "pi2", "source": {"type": "testsrc"}}],
        "webrtc": {"cameras": ["barn"]},
    }
    hosts = {"pi1": {"ansible_host": "192.0.2.10"}, "pi2": {"ansible_host": "192.0.2.11"}}
    files = rendered(write_site(tmp_path / "farm", site, hosts))
    assert all(target in files["pi1"] for target in OME_FILES)
    assert not [target for target in files["pi2"] if "ovenmediaengine" in target or "pi-stream-ome" in target]
    assert "/webrtc/" not in files["pi2"]["etc/nginx/pi-stream/http.conf"] and not pushed(files["pi2"]["etc/nginx/pi-stream/rtmp.conf"])
    assert "3478" not in files["pi2"]["etc/pi-stream/firewall.nft"]


def test_a_transcoded_h265_camera_reaches_ome_as_the_h264_nginx_has(make_site, ome_schema):
    """nginx-rtmp only ever carries H.264: an H.265 camera is stopped with its reason, or transcoded before nginx.
    OME then passes that H.264 through (Bypass) and decodes nothing."""
    cameras = [{"name": "attic", "transcode": True, "source": {"type": "rtsp", "url": "rtsp://192.0.2.40/h265"}}]
    files = rendered(make_site("webrtc", cameras=cameras, webrtc={}))["pi1"]
    server = ET.fromstring(files[SERVER_XML])
    assert server.findtext("VirtualHosts/VirtualHost/Applications/Application/OutputProfiles/OutputProfile/Encodes/Video/Bypass") == "true"
    assert server.find("VirtualHosts/VirtualHost/Applications/Application/OutputProfiles/OutputProfile/Encodes/Audio") is None
    assert check(files[SERVER_XML], ome_schema) == []
    assert pushed(files["etc/nginx/pi-stream/rtmp.conf"]) == ["attic"]


def test_the_api_token_is_not_in_the_bundle(make_site):
    files = rendered(make_site("webrtc"))["pi1"]
    assert ET.fromstring(files[SERVER_XML]).findtext("Managers/API/AccessToken") == "${env:PI_STREAM_OME_API_TOKEN}"
    assert "EnvironmentFile=/etc/pi-stream/ome/api.env" in files["etc/systemd/system/pi-stream-ome.service"]


def test_container_method_runs_the_pinned_image_with_host_networking(make_site):
    image = "docker.io/airensoft/ovenmediaengine@sha256:" + "ab" * 32
    files = rendered(make_site("webrtc", webrtc={"install_method": "container", "image": image}))["pi1"]
    unit = files["etc/systemd/system/pi-stream-ome.service"]
    assert f" {image} /opt/ovenmediaengine/bin/OvenMediaEngine -c origin_conf" in unit
    assert "--network host" in unit and "--pull never" in unit and "Restart=always" in unit
    assert "/etc/ovenmediaengine:/opt/ovenmediaengine/bin/origin_conf:ro" in unit


def test_nginx_accepts_the_webrtc_tree(make_site, short_root):
    directory = install_tree(make_site, "webrtc", short_root)
    nginx_t(short_root, directory)


def nginx_t(root, site_directory) -> None:
    from tests.configs.tree import install_auth_secrets, make_certificate

    for sub in ("var/log/nginx", "var/log/pi-stream", "var/lib/nginx", "run/pi-stream/hls", "var/cache/pi-stream/dvr"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    install_auth_secrets(site_directory, root)
    make_certificate(root)
    result = subprocess.run(["nginx", "-t", "-c", str(root / "etc/nginx/nginx.conf")],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_the_container_unit_passes_systemd_analyze_and_podman_parses_its_command(make_site, tmp_path):
    """The container method, as far as it runs here (no registry): systemd reads the unit, and podman itself
    parses every option of the rendered `podman run`, stopping only at the image it must not pull."""
    import shlex

    from tests.configs.test_real_tools import need

    need("systemd-analyze", "podman")
    image = "docker.io/airensoft/ovenmediaengine@sha256:" + "ab" * 32
    unit = rendered(make_site("webrtc", webrtc={"install_method": "container", "image": image}))["pi1"][
        "etc/systemd/system/pi-stream-ome.service"]
    (tmp_path / "pi-stream-ome.service").write_text(unit)
    result = subprocess.run(["systemd-analyze", "verify", "pi-stream-ome.service"], capture_output=True, text=True, timeout=60,
                            env={"SYSTEMD_UNIT_PATH": f"{tmp_path}:", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr

    exec_start = re.search(r"^ExecStart=(.*?)(?<!\\)$", unit.replace("\\\n", " "), re.MULTILINE)[1]
    argv = shlex.split(exec_start)
    assert argv[:2] == ["/usr/bin/podman", "run"]
    # `create` takes run's options; --rm is run's own. The container name is made unique to this test.
    options = [a if a != "pi-stream-ome" else f"pi-stream-test-{tmp_path.name}" for a in argv[2:] if a != "--rm"]
    created = subprocess.run(["podman", "create", *options], capture_output=True, text=True, timeout=120,
                             stdin=subprocess.DEVNULL)
    assert created.returncode != 0, "nothing may be created without the image"
    assert re.search(r"image not known|no such image|unable to find", created.stderr, re.IGNORECASE), created.stderr
    assert image.split("@")[0] in created.stderr or "sha256:" + "ab" * 32 in created.stderr, created.stderr
