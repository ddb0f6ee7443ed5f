"""The lab's pure parts: names that become interface names, subnet allocation, state files, proxy config.

No root needed: nothing here touches the network or starts a container.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pi_stream import lab
from pi_stream.errors import LabError
from pi_stream.lab import aptproxy, container, model, state
from pi_stream.lab.procs import ProcessRef


@pytest.mark.parametrize("name", ["demo", "test", "a", "lab-2", "x" * 16])
def test_valid_names(name):
    lab.check_name(name)


@pytest.mark.parametrize("name", ["", "Demo", "1lab", "has space", "x" * 17, "../x", "a_b", "-a", "a/b"])
def test_invalid_names(name):
    with pytest.raises(LabError, match="lab name"):
        lab.check_name(name)


@pytest.mark.parametrize(
    ("hosts", "suite", "arch", "problem"),
    [(0, "bookworm", "amd64", "1 to 16"), (17, "bookworm", "amd64", "1 to 16"), (1, "buster", "amd64", "suite"),
     (1, "bookworm", "armhf", "architecture")],
)
def test_invalid_shapes(hosts, suite, arch, problem):
    with pytest.raises(LabError, match=problem):
        model.check_params(hosts, suite, arch)


def test_every_interface_name_fits_the_linux_limit_and_differs_per_lab():
    names = ["demo", "test", "x" * 16, "a-b"]
    bridges = {lab.interface_names(n)[0] for n in names}
    assert len(bridges) == len(names)
    for name in names:
        longest = [
            lab.interface_names(name)[0],
            model.host_veth(name, model.MAX_HOSTS) + "p",  # the peer's name before it becomes eth0
            model.client_veth(name, max(model.CLIENT_OCTETS)) + "p",
        ]
        assert all(len(ifname) <= model.IFNAMSIZ for ifname in longest), longest


def test_labs_whose_names_would_collide_are_found():
    """Two names with one short hash would share a bridge and namespaces: `up` refuses the second."""
    by_hash: dict[str, str] = {}
    for number in range(100_000):
        candidate = f"l{number}"
        other = by_hash.setdefault(lab.short_hash(candidate), candidate)
        if other != candidate:
            break
    else:
        pytest.fail("no short-hash collision among 100,000 names: widen the search")
    assert model.name_clash(candidate, ["demo", other]) == other
    assert model.name_clash(candidate, ["demo", candidate]) is None


def test_the_suites_labs_can_run_side_by_side():
    """Every lab name the tests, the benches and the demo use: distinct short hashes, so two at once never share a name."""
    import re

    tests_dir = Path(__file__).resolve().parents[1]
    names = {"demo"}
    for path in [*tests_dir.rglob("*.py"), *(tests_dir.parent / "bench").rglob("*.py")]:
        names |= set(re.findall(r'^LAB(?:_NAME)?\s*=\s*"([a-z][a-z0-9-]*)"', path.read_text(encoding="utf-8"), re.MULTILINE))
    assert {"relaytest", "relaybench", "rtctest"} <= names and len(names) >= 9, names
    assert len({lab.short_hash(n) for n in names}) == len(names)
    assert all(model.name_clash(n, sorted(names)) is None for n in names)


def test_machine_names_of_one_lab_do_not_match_another_lab_with_a_longer_name():
    """`down a` must never stop lab `a-b`'s containers."""
    pattern = model.machine_re("a")
    assert pattern.match(model.machine_name("a", 3))
    assert not pattern.match(model.machine_name("a-b", 1))
    assert not model.machine_re("a-b").match(model.machine_name("a", 1))


def test_machine_is_read_from_either_nspawn_spelling():
    assert container.machine_of(["/usr/bin/systemd-nspawn", "--machine=ps-x-pi1", "--boot"]) == "ps-x-pi1"
    assert container.machine_of(["systemd-nspawn", "--quiet", "--machine", "ps-x-pi2"]) == "ps-x-pi2"
    assert container.machine_of(["nginx", "--machine=ps-x-pi1"]) is None


def test_subnet_allocation_is_stable_per_name_and_skips_taken():
    first = lab.allocate_subnet("demo", set())
    assert first == lab.allocate_subnet("demo", set()), "same name, same subnet while it is free"
    assert 1 <= first <= 254
    second = lab.allocate_subnet("demo", {first})
    assert second != first
    assert lab.allocate_subnet("demo", {first, second}) not in {first, second}


def test_subnet_allocation_wraps_around_and_fails_when_full():
    everything = set(model.SUBNET_INDEXES)
    assert lab.allocate_subnet("demo", everything - {1}) == 1
    with pytest.raises(LabError, match="no free lab subnet"):
        lab.allocate_subnet("demo", everything)


def test_subnet_index_only_reads_lab_addresses():
    assert model.subnet_index("10.213.7.1/24") == 7
    assert model.subnet_index("10.213.200.0/24") == 200
    assert model.subnet_index("10.21.7.1/24") is None
    assert model.subnet_index("192.168.1.1") is None


def test_lab_shape(tmp_path):
    shape = model.make_lab("demo", "bookworm", "amd64", 3, 7, tmp_path)
    assert shape.host_address == "10.213.7.1" and shape.subnet == "10.213.7.0/24"
    assert [h.name for h in shape.hosts] == ["pi1", "pi2", "pi3"]
    assert [h.address for h in shape.hosts] == ["10.213.7.2", "10.213.7.3", "10.213.7.4"]
    assert shape.apt_proxy_url == "http://10.213.7.1:3142"
    assert len({h.machine for h in shape.hosts}) == len({h.namespace for h in shape.hosts}) == 3
    assert shape.host("pi2").root.is_relative_to(tmp_path)
    with pytest.raises(LabError, match="no host 'pi9'"):
        shape.host("pi9")


def test_inventory_uses_lab_key_and_exact_known_hosts(tmp_path):
    shape = lab.Lab(
        name="t", suite="bookworm", arch="amd64",
        hosts=(lab.LabHost("pi1", "10.213.9.2", "ps-t-pi1", Path("/x")),),
        host_address="10.213.9.1", subnet="10.213.9.0/24", key_path=Path("/k/id"),
        known_hosts_path=Path("/k/known_hosts"), apt_proxy_url="http://10.213.9.1:3142",
    )
    shape.write_inventory(tmp_path / "inventory.yml", extra_vars={"pi_stream_lab": True})
    data = yaml.safe_load((tmp_path / "inventory.yml").read_text())
    host = data["all"]["hosts"]["pi1"]
    assert host["ansible_host"] == "10.213.9.2" and host["ansible_user"] == "root" and host["ansible_port"] == 22
    assert host["ansible_ssh_private_key_file"] == "/k/id"
    assert "StrictHostKeyChecking=yes" in host["ansible_ssh_common_args"]
    assert "UserKnownHostsFile=/k/known_hosts" in host["ansible_ssh_common_args"]
    assert data["all"]["vars"] == {"pi_stream_lab": True}


def test_ssh_argv_pins_key_and_known_hosts(tmp_path):
    shape = model.make_lab("demo", "bookworm", "amd64", 1, 7, tmp_path)
    argv = lab.ssh_argv(shape, "pi1", "uname", "-m")
    assert argv[0] == "ssh" and argv[-3:] == ["root@10.213.7.2", "uname", "-m"]
    assert f"UserKnownHostsFile={tmp_path / 'known_hosts'}" in argv and "StrictHostKeyChecking=yes" in argv
    assert argv[argv.index("-i") + 1] == str(tmp_path / "id_ed25519")


def test_state_round_trip_and_list(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "LABS_DIR", tmp_path)
    shape = model.make_lab("demo", "trixie", "arm64", 2, 9, tmp_path / "demo")
    saved = state.LabState(lab=shape, containers={"pi1": ProcessRef(10, 20)}, proxy=ProcessRef(30, 40))
    state.save_state(saved)
    assert state.load_state("demo") == saved
    assert state.list_labs() == ["demo"]
    assert not list((tmp_path / "demo").glob("*.tmp")), "written through a temp file and renamed"
    (tmp_path / "demo" / "state.json").write_text("{not json")
    assert state.load_state("demo") is None, "an unreadable state is no state; down then cleans up by name"


def test_state_of_the_first_format_still_loads(tmp_path, monkeypatch):
    """Labs started before the module split keep working with status and down."""
    monkeypatch.setattr(state, "LABS_DIR", tmp_path)
    (tmp_path / "old").mkdir()
    old = {
        "name": "old", "suite": "bookworm", "arch": "amd64",
        "hosts": [{"name": "pi1", "address": "10.213.2.2", "machine": "ps-old-pi1", "root": "/r",
                   "namespace": "ps-abc-pi1", "ssh_user": "root", "ssh_port": 22}],
        "host_address": "10.213.2.1", "subnet": "10.213.2.0/24", "bridge": "psbabc", "key_path": "/k",
        "known_hosts_path": "/kh", "apt_proxy_url": "http://10.213.2.1:3142", "pids": {"pi1": 123},
    }
    (tmp_path / "old" / "state.json").write_text(json.dumps(old))
    loaded = state.load_state("old")
    assert loaded.lab.hosts[0].namespace == "ps-abc-pi1" and loaded.containers == {"pi1": ProcessRef(123, 0)}


def test_apt_proxy_listens_on_the_bridge_only_and_speaks_http_1_1(tmp_path):
    text = aptproxy.config_text(tmp_path / "lab", tmp_path / "cache", "10.213.7.1", "zone")
    assert "listen 10.213.7.1:3142;" in text and text.count("listen ") == 1
    assert "proxy_http_version 1.1;" in text and "proxy_set_header Host deb.debian.org;" in text
    assert "/etc/nginx" not in text and "daemon off;" in text


@pytest.mark.skipif(not Path(aptproxy.NGINX).exists(), reason="nginx is not installed")
def test_apt_proxy_config_passes_nginx_t(tmp_path):
    """The real nginx accepts the config (-t binds nothing, so no root or bridge is needed)."""
    own = aptproxy.proxy_dir(tmp_path / "lab")
    own.mkdir(parents=True)
    for sub in ("data", "tmp"):
        (aptproxy.cache_dir(tmp_path / "cache") / sub).mkdir(parents=True)
    conf = own / "nginx.conf"
    conf.write_text(aptproxy.config_text(tmp_path / "lab", tmp_path / "cache", "127.0.0.1", "zone"))
    result = subprocess.run([aptproxy.NGINX, "-t", "-p", f"{own}/", "-c", str(conf), "-e", str(own / "error.log")],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)


def test_a_removed_lock_file_still_serialises_its_holders(tmp_path):
    """down removes the lab's lock file; a waiter must then lock the new file, not the removed one."""
    import threading

    path = tmp_path / ".demo.lock"
    events: list[str] = []
    with state.file_lock(path) as held:
        held.remove = True

        def second() -> None:
            with state.file_lock(path):
                events.append("second holds")
                assert path.exists(), "the second holder locks a file that is really at the path"

        waiter = threading.Thread(target=second)
        waiter.start()
        waiter.join(timeout=0.5)
        assert waiter.is_alive(), "the second holder waits while the first holds the lock"
        events.append("first releases")
    waiter.join(timeout=10)
    assert events == ["first releases", "second holds"]
