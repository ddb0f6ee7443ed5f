#!/bin/sh
# Build nginx with nginx-rtmp-module and package it as pi-stream-nginx_VERSION_ARCH.deb.
#
#   build-nginx-deb.sh WORKDIR NGINX_TARBALL MODULE_TARBALL VERSION LINK FLAGS_FILE FILES_DIR OUTPUT_DEB
#
# LINK is "static" (the module compiled into the binary) or "dynamic"
# (ngx_rtmp_module.so, loaded from /etc/nginx/modules-enabled/50-mod-rtmp.conf).
# FLAGS_FILE holds one configure flag per line. FILES_DIR holds nginx.service,
# nginx.logrotate and apt-preferences (the pin that keeps the distribution's
# nginx out while this package is installed). The role names VERSION after every input of the build,
# so an unchanged build is never run twice; this script only builds.
set -eu

work=$1 nginx_tarball=$2 module_tarball=$3 version=$4 link=$5 flags_file=$6 files=$7 output=$8

case $link in
    static) module_flag=--add-module ;;
    dynamic) module_flag=--add-dynamic-module ;;
    *) echo "LINK must be static or dynamic, not '$link'" >&2; exit 2 ;;
esac

rm -rf "$work/nginx" "$work/nginx-rtmp-module" "$work/staging"
mkdir -p "$work/nginx" "$work/nginx-rtmp-module" "$work/staging/DEBIAN"
# Both tarballs hold one top directory (nginx-1.26.3/, nginx-rtmp-module-1.2.2/).
tar -xf "$nginx_tarball" -C "$work/nginx" --strip-components=1
tar -xf "$module_tarball" -C "$work/nginx-rtmp-module" --strip-components=1
test -x "$work/nginx/configure" || { echo "$nginx_tarball is not an nginx source release (no ./configure)" >&2; exit 3; }
test -f "$work/nginx-rtmp-module/config" || { echo "$module_tarball is not an nginx module (no ./config)" >&2; exit 3; }

# The distribution's hardening (stack protector, fortify, relro, now), as its own
# nginx gets. nginx compiles with -Werror, and nginx-rtmp-module prints its
# build date (__DATE__), which -Wdate-time flags: a warning, not an error, here.
cflags="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS) -fPIC -Wno-error=date-time"
ldflags="$(dpkg-buildflags --get LDFLAGS) -fPIC"

cd "$work/nginx"
# One flag per line: word splitting on newlines only keeps each flag whole.
old_ifs=$IFS
IFS='
'
# shellcheck disable=SC2046
./configure $(cat "$flags_file") "--with-cc-opt=$cflags" "--with-ld-opt=$ldflags" "$module_flag=$work/nginx-rtmp-module"
IFS=$old_ifs
make -j"$(nproc)"
make install DESTDIR="$work/staging"

root=$work/staging
# Only what the roles do not write: nginx.conf and the sites belong to the
# nginx_rtmp role; the *.default copies and the CGI parameter files of the
# modules left out are not installed.
find "$root/etc/nginx" -type f ! -name mime.types -delete
mkdir -p "$root/etc/nginx/conf.d" "$root/etc/nginx/sites-available" "$root/etc/nginx/sites-enabled" \
    "$root/etc/nginx/modules-enabled" "$root/var/lib/nginx" "$root/var/log/nginx"
if [ "$link" = dynamic ]; then
    echo 'load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;' > "$root/etc/nginx/modules-enabled/50-mod-rtmp.conf"
fi
install -D -m 0644 "$files/nginx.service" "$root/usr/lib/systemd/system/nginx.service"
install -D -m 0644 "$files/nginx.logrotate" "$root/etc/logrotate.d/nginx"
install -D -m 0644 "$files/apt-preferences" "$root/etc/apt/preferences.d/pi-stream-nginx"
rm -rf "$root/run"  # nginx creates its pid directory; /run is a tmpfs, no package ships it

# Depends: the packages that own the libraries the binary links.
depends=$(
    for binary in "$root/usr/sbin/nginx" "$root"/usr/lib/nginx/modules/*.so; do
        [ -e "$binary" ] && ldd "$binary"
    done | awk '$3 ~ /^\// {print $3}' | sort -u |
    while read -r library; do
        dpkg -S "$(readlink -f "$library")" 2>/dev/null || dpkg -S "$library" 2>/dev/null || true
    done | cut -d: -f1 | sort -u | paste -sd, - | sed 's/,/, /g'
)

# Conflicts/Replaces/Provides: apt keeps the distribution's nginx from
# replacing this one, and a package asking for "nginx" is satisfied by it.
distro="nginx, nginx-common, nginx-core, nginx-light, nginx-full, nginx-extras, libnginx-mod-rtmp"
cat > "$root/DEBIAN/control" <<CONTROL
Package: pi-stream-nginx
Version: $version
Architecture: $(dpkg --print-architecture)
Maintainer: pi-stream <root@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: ${depends:-libc6}, logrotate
Conflicts: $distro
Replaces: $distro
Provides: nginx, httpd
Section: httpd
Priority: optional
Description: nginx with nginx-rtmp-module, built from source by pi-stream
 Built from checksummed upstream sources with the configure flags in
 /usr/share/doc/pi-stream-nginx/configure-flags. It does not get the
 distribution's security fixes: bump the version in site.yml to update.
CONTROL
printf '%s\n' /etc/nginx/mime.types /etc/logrotate.d/nginx /etc/apt/preferences.d/pi-stream-nginx > "$root/DEBIAN/conffiles"
install -D -m 0644 "$flags_file" "$root/usr/share/doc/pi-stream-nginx/configure-flags"

cat > "$root/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
SCRIPT
# Stopped before its files go, so no nginx outlives its binary; the next
# package's nginx (the distribution's, on a switch back) starts its own.
cat > "$root/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl disable --now nginx.service >/dev/null 2>&1 || true
fi
SCRIPT
cat > "$root/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
    rm -rf /var/lib/nginx /var/log/nginx
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
SCRIPT
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

mkdir -p "$(dirname "$output")"
dpkg-deb --root-owner-group -Zxz --build "$root" "$output.partial"
mv "$output.partial" "$output"
rm -rf "$work/nginx" "$work/nginx-rtmp-module" "$work/staging"
