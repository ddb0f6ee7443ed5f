"""Remove pi-stream from a site's hosts: playbooks/remove.yml, run as `deploy` runs site.yml.

The same argv, SSH probe, structured events and DeployResult (pi_stream.deploy), and the same progress
lines (pi_stream.workflows.DeployProgress). What the playbook removes and keeps: docs/removing.md.
Options the playbook reads from the inventory (or `-e` with plain ansible-playbook):
pi_stream_keep_packages, pi_stream_keep_recordings.
"""

from __future__ import annotations

from pi_stream import share
from pi_stream.console import Console
from pi_stream.deploy import DeployResult, deploy, limited_hosts
from pi_stream.site import Site
from pi_stream.workflows import DeployProgress, report_run

PLAYBOOK = share.PLAYBOOKS / "remove.yml"
# Stopping the capture and purging nginx and fail2ban takes a minute on a Pi; an index refresh over a slow link more.
REMOVE_TIMEOUT_SECONDS = 1800


def run_remove(site: Site, console: Console, *, limit: str | None = None) -> DeployResult:
    """Remove pi-stream from the site's hosts (those `limit` selects), with progress and a summary table.

    The site directory on the controller is left as it is. Raises UnreachableError before anything runs if a
    host does not answer SSH.
    """
    hosts = ", ".join(f"{h.name} ({h.address})" for h in limited_hosts(site, limit))
    console.progress(f"removing pi-stream from {hosts}")
    result = deploy(site, playbook=PLAYBOOK, limit=limit, on_event=DeployProgress(console), timeout=REMOVE_TIMEOUT_SECONDS)
    failed = f"removal failed; run it again once the cause is fixed (it picks up where it stopped); the run's events are in {result.run_dir}"
    if report_run(result, console, failed):
        console.info(
            f"pi-stream is removed from {hosts}. The site directory {site.directory} is kept: "
            "`pi-stream deploy` puts everything back, or delete it if you are done."
        )
    return result
