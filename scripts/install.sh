#!/usr/bin/env bash
# Install everything pi-stream's demo and tests need on a Debian 12 machine, as root.
# Idempotent: a second run installs nothing and takes seconds.
#
#   bash scripts/install.sh            system packages + .venv with pi-stream
#   PI_STREAM_ARM64=1 bash scripts/install.sh   also qemu-user-static for arm64 labs
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "error: run as root (the lab needs debootstrap, network namespaces and systemd-nspawn)" >&2
    exit 1
fi

# Programs, not services: nginx and fail2ban are used here for `nginx -t`, the lab's
# apt proxy and fail2ban-regex. chromium plays the player page in the browser tests.
packages=(
    python3 python3-venv python3-pip python3-bcrypt
    # The Pi's update report (pi_stream_updates.py) runs on this machine's apt cache in tests/configs.
    python3-apt
    # The login service's identity logins (pi_stream_auth.py) verify ID tokens with Debian's PyJWT, as on the Pi.
    python3-jwt python3-cryptography
    debootstrap systemd-container iproute2 iputils-ping procps nftables openssh-client openssl
    nginx libnginx-mod-rtmp ffmpeg fail2ban
    chromium chromium-driver curl fonts-dejavu-core ca-certificates wrk
    vagrant
    # The README's quick start installs pi-stream with pipx; tests/lab/installed follows it to the letter.
    pipx
    # wg-quick parses the rendered tunnel configs (tests/configs/test_relay_render.py); no tunnel is made here.
    wireguard-tools
    # podman parses the WebRTC container unit's command (tests/configs/test_webrtc_render.py); nothing is pulled.
    podman
    # The fake NVR (pi_stream/lab/fake_nvr.py) under /usr/bin/python3: gst-rtsp-server's bindings,
    # videotestsrc (base), rtph264pay/rtph265pay (good), x264enc (ugly), x265enc (bad).
    python3-gi gir1.2-gst-rtsp-server-1.0
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad
)
if [ "${PI_STREAM_ARM64:-0}" = 1 ]; then
    packages+=(qemu-user-static binfmt-support)
fi

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep package installs from starting nginx/fail2ban as services on this machine.
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 0755 "$policy"
        created_policy=1
    fi
    trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv .venv
fi
stamp=.venv/.pi-stream-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[test]'
    touch "$stamp"
fi
echo "ready: .venv/bin/pi-stream $(.venv/bin/pi-stream --version | awk '{print $NF}')"
