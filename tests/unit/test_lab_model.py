"""The lab's pure parts: names that become interface names, subnet allocation, inventory shape."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pi_stream import lab
from pi_stream.errors import LabError


@pytest.mark.parametrize("name", ["demo", "test", "a", "lab-2", "x" * 16])
def test_valid_names(name):
    lab.check_name(name)


@pytest.mark.parametrize("name", ["", "Demo", "1lab", "has space", "x" * 17, "../x", "a_b"])
def test_invalid_names(name):
    with pytest.raises(LabError):
        lab.check_name(name)


def test_interface_names_fit_linux_limit_and_differ_per_lab():
    names = {lab.interface_names(n) for n in ("demo", "test", "x" * 16)}
    assert len(names) == 3
    for bridge, veth in names:
        assert len(bridge) <= 15 and len(veth) + len("99p") <= 15


def test_subnet_allocation_skips_taken():
    assert lab.allocate_subnet(set()) == 1
    assert lab.allocate_subnet({1, 2, 4}) == 3
    with pytest.raises(LabError, match="no free lab subnet"):
        lab.allocate_subnet(set(range(1, 255)))


def test_inventory_uses_lab_key_and_exact_known_hosts(tmp_path):
    state = lab.Lab(
        name="t", suite="bookworm", arch="amd64",
        hosts=(lab.LabHost("pi1", "10.213.9.2", "ps-t-pi1", Path("/x"), "ns"),),
        host_address="10.213.9.1", subnet="10.213.9.0/24", bridge="psb", key_path=Path("/k/id"),
        known_hosts_path=Path("/k/known_hosts"), apt_proxy_url="http://10.213.9.1:3142",
    )
    state.write_inventory(tmp_path / "inventory.yml")
    data = yaml.safe_load((tmp_path / "inventory.yml").read_text())
    host = data["all"]["hosts"]["pi1"]
    assert host["ansible_host"] == "10.213.9.2" and host["ansible_ssh_private_key_file"] == "/k/id"
    assert "StrictHostKeyChecking=yes" in host["ansible_ssh_common_args"]
    assert "UserKnownHostsFile=/k/known_hosts" in host["ansible_ssh_common_args"]
