#!/bin/sh
# vhostblk's libvirt QEMU hook, installed by `vhostblk install-hook` (do not edit: re-run it).
# libvirt runs it as: qemu.d/vhostblk DOMAIN OPERATION SUB-OPERATION EXTRA, domain XML on stdin.
# libvirt scans its hook directory only when libvirtd starts: restart libvirtd after installing.
# Only domains converted by vhostblk reach Java; every other call returns at once.
case "$2/$3" in
  prepare/begin|release/end|reconnect/begin) ;;
  *) exit 0 ;;
esac
xml=$(cat)
case "$xml" in
  *https://vhostblk.io/xmlns/libvirt/1*) ;;
  *) exit 0 ;;
esac
VHOSTBLK_CONFIG='@CONFIG@'
export VHOSTBLK_CONFIG
printf '%s\n' "$xml" | '@LAUNCHER@' hook "$@"
