#!/usr/bin/env bash
# Make an OCI bundle in DIR from the host's static busybox (Debian's busybox-static):
# DIR/rootfs with busybox and its applet links, DIR/config.json from `budu-runtime spec`.
set -euo pipefail
dir=${1:?usage: busybox-bundle.sh DIR}
bb=$(command -v busybox)
mkdir -p "$dir/rootfs"/{bin,proc,sys,dev,etc,tmp,root}
cp "$bb" "$dir/rootfs/bin/busybox"
for applet in $("$bb" --list); do
    [ -e "$dir/rootfs/bin/$applet" ] || ln -s busybox "$dir/rootfs/bin/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" > "$dir/rootfs/etc/passwd"
echo "root:x:0:" > "$dir/rootfs/etc/group"
rm -f "$dir/config.json"
budu-runtime spec -b "$dir"
