"""Where labs live on disk, their state file (written atomically) and the locks around them.

state.json records what `up` started (process ids with their start times, so a
reused PID is never mistaken for ours) besides the public Lab. It is written
before anything is created and rewritten as things come up, so `down` after a
crash knows at least the lab's name, and every other name derives from that.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pi_stream.lab.model import Lab, LabHost, host_namespace
from pi_stream.lab.procs import ProcessRef

# Overridable so a developer can keep labs elsewhere; both must be on a local file system.
LABS_DIR = Path(os.environ.get("PI_STREAM_LAB_DIR", "/var/lib/pi-stream/labs"))
CACHE_DIR = Path(os.environ.get("PI_STREAM_CACHE_DIR", "/var/cache/pi-stream"))
STATE_FORMAT = 2


@dataclass(frozen=True)
class LabState:
    lab: Lab
    containers: dict[str, ProcessRef] = field(default_factory=dict)  # host name -> its systemd-nspawn
    proxy: ProcessRef | None = None  # the lab's nginx master


def lab_dir(name: str) -> Path:
    return LABS_DIR / name


def state_path(name: str) -> Path:
    return lab_dir(name) / "state.json"


def save_state(state: LabState) -> None:
    path = state_path(state.lab.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "format": STATE_FORMAT,
        "lab": asdict(state.lab),
        "containers": {host: asdict(ref) for host, ref in state.containers.items()},
        "proxy": asdict(state.proxy) if state.proxy else None,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_state(name: str) -> LabState | None:
    """The recorded state, or None if there is none or it cannot be read (down then cleans up by name)."""
    try:
        data = json.loads(state_path(name).read_text(encoding="utf-8"))
        return _from_json(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _from_json(data: dict) -> LabState:
    if data.get("format") == STATE_FORMAT:
        lab_data = data["lab"]
        containers = {host: ProcessRef(**ref) for host, ref in data.get("containers", {}).items()}
        proxy = ProcessRef(**data["proxy"]) if data.get("proxy") else None
    else:
        # Format 1 (the first, single-module lab): Lab fields plus bridge and pids at the top level,
        # PIDs without start times. Read so that status and down keep working across the upgrade.
        lab_data = {key: value for key, value in data.items() if key not in ("bridge", "pids")}
        containers = {host: ProcessRef(pid=pid, start_time=0) for host, pid in data.get("pids", {}).items()}
        proxy = None
    hosts = tuple(
        LabHost(
            name=h["name"],
            address=h["address"],
            machine=h["machine"],
            root=Path(h["root"]),
            ssh_user=h.get("ssh_user", "root"),
            ssh_port=int(h.get("ssh_port", 22)),
            namespace=h.get("namespace") or host_namespace(lab_data["name"], int(h["name"][2:])),
        )
        for h in lab_data["hosts"]
    )
    lab = Lab(
        name=lab_data["name"],
        suite=lab_data["suite"],
        arch=lab_data["arch"],
        hosts=hosts,
        host_address=lab_data["host_address"],
        subnet=lab_data["subnet"],
        key_path=Path(lab_data["key_path"]),
        known_hosts_path=Path(lab_data["known_hosts_path"]),
        apt_proxy_url=lab_data["apt_proxy_url"],
    )
    return LabState(lab=lab, containers=containers, proxy=proxy)


def list_labs() -> list[str]:
    if not LABS_DIR.is_dir():
        return []
    return sorted(p.name for p in LABS_DIR.iterdir() if (p / "state.json").exists())


@dataclass
class Held:
    """A held lock; set `remove` to delete the lock file on release (when nothing is left to guard)."""

    remove: bool = False


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[Held]:
    """An exclusive flock, released when the holder exits however it exits.

    The file may be removed on release (see Held); a waiter that then gets the
    lock on the removed file notices that the path names another file (or none)
    and locks again, so two holders never overlap.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(path, "a")  # noqa: SIM115 - closed below or after the yield
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()
    held = Held()
    try:
        yield held
    finally:
        if held.remove:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def lab_lock(name: str) -> contextlib.AbstractContextManager[Held]:
    """Serialises up/down of one lab. Outside the lab's directory, which `down` deletes; removed when the lab is."""
    return file_lock(LABS_DIR / f".{name}.lock")


def allocation_lock() -> contextlib.AbstractContextManager[Held]:
    """Held from choosing a subnet until the state file that claims it is written."""
    return file_lock(LABS_DIR / ".subnets.lock")
