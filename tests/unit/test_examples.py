"""examples/: one site per topology; each loads and renders once a viewer is added (and, for relay, the hosts' keys)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pi_stream import credentials
from pi_stream.render import render_site
from pi_stream.site import load_site
from tests.conftest import write_public_keys

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("topology", ["lan", "port_forward", "relay"])
def test_each_topology_has_an_example_that_renders(tmp_path, topology):
    site_dir = tmp_path / topology
    shutil.copytree(EXAMPLES / topology, site_dir)
    credentials.add_user(site_dir, "alice", "correct horse battery")
    site = load_site(site_dir)
    assert site.remote.topology == topology
    if topology == "relay":
        write_public_keys(site_dir, ["pi1", "relay1", "relay2"])
    bundle = render_site(site)
    assert set(bundle) == ({"pi1", "relay1", "relay2"} if topology == "relay" else {"pi1"})
    firewall = bundle["pi1"]["etc/pi-stream/firewall.nft"].content.decode()
    assert ("ip saddr { 10.0.0.0/8" in firewall) == (topology != "port_forward"), "the Pi's web ports stay private unless forwarded"
