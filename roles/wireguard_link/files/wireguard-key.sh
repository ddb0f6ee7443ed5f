#!/bin/sh
# pi-stream: this host's WireGuard key, for the wireguard_link role.
#   wireguard-key.sh make KEYFILE   make the private key once (0600, atomically); prints nothing
#   wireguard-key.sh public KEYFILE print its public key (what the peers need; not a secret)
# The private key is written by wg itself under umask 077 and never printed.
set -eu
action=$1
key=$2
case $action in
make)
    [ -s "$key" ] && exit 0
    umask 077
    wg genkey > "$key.new"
    mv "$key.new" "$key"
    ;;
public)
    wg pubkey < "$key"
    ;;
*)
    echo "usage: $0 make|public KEYFILE" >&2
    exit 2
    ;;
esac
