"""The lab's apt proxy: an nginx of its own on the bridge address, caching deb.debian.org.

Containers cannot reach the mirror (no NAT), so their sources point here:
http://<bridge address>:3142/debian and /debian-security. It is the host's
/usr/sbin/nginx with its own config, prefix and pid file in the lab directory
(/etc/nginx and the host's nginx service are never touched), run in the
foreground (`daemon off`) and supervised like the containers.

Cache policy: package files (.deb, sources) and by-hash indexes never change
under one name, so they are kept for months; InRelease and plain-named index
files change several times a day, so they are kept for one minute only (long
enough that two containers running `apt-get update` together fetch once) and
served stale only when the mirror fails.

One cache directory for all labs (/var/cache/pi-stream/apt-proxy), so a new lab,
or the test lab after a demo, installs from disk. Two nginx instances on one
proxy_cache_path is not a setup nginx coordinates, but it is safe here:
- every instance writes a response to a temp file in the cache directory and
  renames it into place, so a reader never sees half a file;
- an instance does not know entries another one added after it started (its
  index lives in its own shared memory), so it fetches them once more and
  renames over them: duplicate work, not corruption;
- an instance's cache manager deletes only entries in its own index (size or
  inactive limits); a file deleted under another instance is a cache miss there,
  and a file it has open stays readable until closed.
The alternative, one shared nginx for all labs, would need reference counting
between labs that come and go independently; not worth it for a test rig.
"""

from __future__ import annotations

import pwd
import shutil
import signal
import socket
import time
from pathlib import Path

from pi_stream.errors import LabError
from pi_stream.lab import model, procs
from pi_stream.proc import run

MIRROR_HOST = "deb.debian.org"
NGINX = "/usr/sbin/nginx"
WORKER_USER = "www-data"  # the Debian nginx package's user: the cache files stay readable by it
START_TIMEOUT_SECONDS = 15
STOP_TIMEOUT_SECONDS = 10


def cache_dir(cache_root: Path) -> Path:
    return cache_root / "apt-proxy"


def proxy_dir(lab_directory: Path) -> Path:
    return lab_directory / "apt-proxy"


def config_text(lab_directory: Path, cache_root: Path, listen: str, zone: str) -> str:
    own = proxy_dir(lab_directory)
    cache = cache_dir(cache_root)
    upstream = f"http://{MIRROR_HOST}"
    return f"""# The apt proxy of one pi-stream lab; written at `lab up`, deleted at `lab down`.
# Started as: nginx -p {own}/ -c {own}/nginx.conf -e {own}/error.log
daemon off;
master_process on;
worker_processes 1;
user {WORKER_USER};
pid {own}/nginx.pid;
error_log {own}/error.log warn;
events {{ worker_connections 512; }}
http {{
    log_format cached '$remote_addr [$time_local] "$request" $status $body_bytes_sent cache=$upstream_cache_status';
    access_log {own}/access.log cached;
    sendfile on;
    # Temp paths of our own: nginx's compiled-in ones belong to the host's nginx.
    client_body_temp_path {cache}/tmp/client_body;
    proxy_temp_path {cache}/tmp/proxy;
    fastcgi_temp_path {cache}/tmp/fastcgi;
    uwsgi_temp_path {cache}/tmp/uwsgi;
    scgi_temp_path {cache}/tmp/scgi;
    proxy_cache_path {cache}/data levels=1:2 keys_zone={zone}:16m inactive=180d max_size=20g use_temp_path=off;

    server {{
        # Only the lab's bridge: nothing outside this machine, nor another lab, can use it.
        listen {listen}:{model.PROXY_PORT};
        # The mirror answers HTTP/1.0 with 426 Upgrade Required.
        proxy_http_version 1.1;
        proxy_set_header Host {MIRROR_HOST};
        proxy_set_header Connection "";
        proxy_connect_timeout 15s;
        proxy_read_timeout 120s;
        proxy_cache {zone};
        # Two containers asking for one file wait for one download (then read it from the cache).
        proxy_cache_lock on;
        proxy_cache_lock_timeout 60s;
        proxy_cache_lock_age 60s;
        proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
        add_header X-Cache-Status $upstream_cache_status always;

        location ~ (\\.(deb|udeb|dsc|diff\\.gz|tar\\.[a-z0-9]+)|/by-hash/[A-Za-z0-9]+/[0-9a-f]+)$ {{
            proxy_pass {upstream};
            proxy_ignore_headers Cache-Control Expires Set-Cookie;
            proxy_cache_valid 200 180d;
        }}
        location / {{
            proxy_pass {upstream};
            proxy_cache_valid 200 1m;
        }}
    }}
}}
"""


def prepare_cache(cache_root: Path) -> None:
    try:
        user = pwd.getpwnam(WORKER_USER)
    except KeyError as exc:
        raise LabError(f"user {WORKER_USER} not found: the lab's apt proxy runs the host's nginx (apt-get install nginx)") from exc
    cache = cache_dir(cache_root)
    for sub in ("data", "tmp"):
        path = cache / sub
        path.mkdir(parents=True, exist_ok=True)
        shutil.chown(path, user.pw_uid, user.pw_gid)


def start(lab_directory: Path, cache_root: Path, listen: str, zone: str) -> procs.ProcessRef:
    """Write the config, check it, start nginx and wait until it accepts connections."""
    own = proxy_dir(lab_directory)
    own.mkdir(parents=True, exist_ok=True)
    prepare_cache(cache_root)
    conf = own / "nginx.conf"
    conf.write_text(config_text(lab_directory, cache_root, listen, zone), encoding="utf-8")
    argv = [NGINX, "-p", f"{own}/", "-c", str(conf), "-e", str(own / "error.log")]
    run([*argv, "-t", "-q"], timeout=30)
    ref = procs.spawn(argv, own / "nginx.out")
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if not procs.alive(ref, "nginx"):
            procs.reap(ref.pid)
            raise LabError(f"the lab's apt proxy (nginx) exited at start:\n{procs.log_tail(own / 'error.log')}")
        try:
            with socket.create_connection((listen, model.PROXY_PORT), timeout=1):
                return ref
        except OSError:
            time.sleep(0.1)
    raise LabError(f"the lab's apt proxy did not listen on {listen}:{model.PROXY_PORT} within {START_TIMEOUT_SECONDS}s")


def stop(lab_directory: Path, ref: procs.ProcessRef | None) -> None:
    """Stop the lab's nginx: the recorded master, or any nginx run from this lab's directory.

    The scan by command line also finds a proxy whose state was never written
    (a crash between start and save) or that an older version started with `daemon on`.
    """
    refs = [ref] if ref else []
    marker = str(proxy_dir(lab_directory)) + "/"
    for pid in procs.all_pids():
        # nginx rewrites its command line to "nginx: master process <argv>": match on the text.
        text = " ".join(procs.cmdline(pid))
        if text.startswith(("nginx: master process", NGINX, "nginx ")) and marker in text:
            found = procs.ref_of(pid)
            if found and found not in refs:
                refs.append(found)
    # SIGQUIT: finish the responses in flight, then exit; stop() falls back to SIGKILL of the group.
    procs.stop(refs, "nginx", signal.SIGQUIT, STOP_TIMEOUT_SECONDS)
