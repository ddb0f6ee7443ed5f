#!/bin/sh
# Build OvenMediaEngine against Debian's libraries and package it as pi-stream-ome_VERSION_ARCH.deb.
#
#   build-ome-deb.sh WORKDIR OME_TARBALL SPDLOG_TARBALL VERSION FILES_DIR OUTPUT_DEB OPTIMIZE
#
# OPTIMIZE "yes" is OME's own release build (-O3, with debug information,
# stripped from the package); "no" compiles without optimisation or debug
# information, about 2.4 times faster, for trying a site out and for the lab.
#
# OME's misc/prerequisites.sh downloads and builds its own ffmpeg, srtp, srt,
# opus, vpx, x264, openh264, jemalloc, pcre2, hiredis and spdlog; a Pi may not
# reach those sites. Debian's packages stand in for all but spdlog: OME patches
# spdlog's log record (FILES_DIR/spdlog-thread-name.patch), which changes its
# layout, so spdlog is built here from SPDLOG_TARBALL (Debian's own source,
# its bundled fmt removed), static, against Debian's fmt. OME's logger
# includes spdlog's bundled fmt header by its path; a one-line header there
# includes Debian's fmt instead.
#
# The role names VERSION after every input of the build, so an unchanged
# build is never run twice; this script only builds.
set -eu

work=$1 ome_tarball=$2 spdlog_tarball=$3 version=$4 files=$5 output=$6 optimize=$7
case $optimize in
    yes) extra_flags= ;;
    # After OME's own -g -O3 on the compiler's command line, so these win.
    no) extra_flags="-O0 -g0" ;;
    *) echo "OPTIMIZE must be yes or no, not $optimize" >&2; exit 2 ;;
esac
jobs=$(nproc)

rm -rf "$work/ome" "$work/spdlog" "$work/prefix" "$work/root"
mkdir -p "$work/ome" "$work/spdlog" "$work/prefix" "$work/root/DEBIAN"
tar -xf "$ome_tarball" -C "$work/ome" --strip-components=1
tar -xf "$spdlog_tarball" -C "$work/spdlog" --strip-components=1
test -f "$work/ome/src/Makefile" || { echo "$ome_tarball is not an OvenMediaEngine source release (no src/Makefile)" >&2; exit 3; }
test -f "$work/spdlog/include/spdlog/details/log_msg.h" || { echo "$spdlog_tarball is not spdlog's source" >&2; exit 3; }

echo "== spdlog, patched, static, with Debian's fmt"
(cd "$work/spdlog" && patch -p1 --forward < "$files/spdlog-thread-name.patch")
cmake -S "$work/spdlog" -B "$work/spdlog/build" -DCMAKE_BUILD_TYPE=Release -DSPDLOG_FMT_EXTERNAL=ON \
    -DSPDLOG_BUILD_EXAMPLE=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
    -DCMAKE_INSTALL_PREFIX="$work/prefix" -DCMAKE_INSTALL_LIBDIR=lib
cmake --build "$work/spdlog/build" --parallel "$jobs"
cmake --install "$work/spdlog/build"
mkdir -p "$work/prefix/include/spdlog/fmt/bundled"
echo '#include <fmt/format.h>' > "$work/prefix/include/spdlog/fmt/bundled/format.h"

echo "== OvenMediaEngine"
# CONFIG_PKG_PATHS replaces OME's /opt/ovenmediaengine (where its prerequisites
# script installs): pkg-config finds the spdlog above and Debian's libraries.
# An empty CONFIG_LIBRARY_PATHS: no rpath, every library is the system's.
make -C "$work/ome/src" release -j"$jobs" \
    CONFIG_PKG_PATHS="$work/prefix/lib/pkgconfig" CONFIG_LIBRARY_PATHS= \
    CXXFLAGS="-I$work/prefix/include -DSPDLOG_FMT_EXTERNAL $extra_flags" CFLAGS="$extra_flags"

root=$work/root
binary=$work/ome/src/bin/RELEASE/OvenMediaEngine
test -x "$binary" || { echo "the build made no $binary" >&2; exit 4; }
install -D -m 0755 "$binary" "$root/usr/bin/OvenMediaEngine"
strip --strip-unneeded "$root/usr/bin/OvenMediaEngine"
install -D -m 0644 "$work/ome/LICENSE" "$root/usr/share/doc/pi-stream-ome/copyright"
install -D -m 0644 "$files/spdlog-thread-name.patch" "$root/usr/share/doc/pi-stream-ome/spdlog-thread-name.patch"

# Depends: the packages that own the libraries the binary links itself (its
# NEEDED entries; what those pull in is their packages' business). ldd maps
# each name to the file the loader picks.
binary_installed=$root/usr/bin/OvenMediaEngine
if ldd "$binary_installed" | grep "not found" >&2; then
    echo "the binary links libraries this host does not have" >&2
    exit 5
fi
needed=$(objdump -p "$binary_installed" | awk '$1 == "NEEDED" {print $2}')
depends=$(
    for soname in $needed; do
        library=$(ldd "$binary_installed" | awk -v soname="$soname" '$1 == soname && $3 ~ /^\// {print $3}')
        dpkg -S "$(readlink -f "$library")" 2>/dev/null || dpkg -S "$library"
    done | cut -d: -f1 | sort -u | paste -sd, - | sed 's/,/, /g'
)
test "$(echo "$needed" | wc -w)" -gt 0 && test -n "$depends" || { echo "no Depends found for $needed" >&2; exit 5; }

cat > "$root/DEBIAN/control" <<CONTROL
Package: pi-stream-ome
Version: $version
Architecture: $(dpkg --print-architecture)
Maintainer: pi-stream <root@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends
Section: video
Priority: optional
Description: OvenMediaEngine, built from source by pi-stream
 Sub-second WebRTC streaming server, built from a checksummed upstream
 release against the distribution's ffmpeg, srtp, srt, opus, vpx, pcre2,
 hiredis and jemalloc. It does not get the distribution's security fixes:
 bump the version in site.yml to update.
CONTROL

mkdir -p "$(dirname "$output")"
dpkg-deb --root-owner-group -Zxz --build "$root" "$output.partial"
mv "$output.partial" "$output"
rm -rf "$work/ome" "$work/spdlog" "$work/prefix" "$work/root"
