#!/usr/bin/env bash
# Builds the gzipped cpio initramfs of the vhostblk test guest from installed Debian
# packages: busybox-static, the virtio modules of linux-image-amd64, fio (+ its shared
# libraries) and init.sh (installed as /init).
#
# Usage: build-initrd.sh OUT.gz
#   Writes OUT.gz atomically and OUT.gz.kernel (one line: the matching /boot/vmlinuz-*).
#   KVER=<version> selects the kernel (default: newest /boot/vmlinuz-* with modules).
# Re-running it is safe: every run builds from scratch in a temporary directory.
set -euo pipefail

die() { echo "build-initrd.sh: ERROR: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 OUT.gz"
OUT=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
INIT_SH=$HERE/init.sh
[ -f "$INIT_SH" ] || die "missing $INIT_SH"

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found; install the Debian package '$2' (apt-get install -y $2)"; }
need cpio cpio
need gzip gzip
need modinfo kmod
need ldd libc-bin

# ---- kernel -----------------------------------------------------------------------
if [ -z "${KVER:-}" ]; then
    for k in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sed 's|^/boot/vmlinuz-||' | sort -V -r); do
        if [ -d "/lib/modules/$k/kernel" ]; then KVER=$k; break; fi
    done
fi
[ -n "${KVER:-}" ] || die "no /boot/vmlinuz-* with matching /lib/modules/<version>; install the Debian package linux-image-amd64"
KERNEL=/boot/vmlinuz-$KVER
[ -r "$KERNEL" ] || die "kernel $KERNEL not readable (install linux-image-amd64)"
[ -d "/lib/modules/$KVER" ] || die "no /lib/modules/$KVER (install linux-image-amd64)"

# ---- busybox (must be static: it is the whole userland) --------------------------------
BUSYBOX=
for b in /bin/busybox /usr/bin/busybox; do [ -x "$b" ] && { BUSYBOX=$b; break; }; done
[ -n "$BUSYBOX" ] || die "busybox not found; install the Debian package busybox-static"
if LC_ALL=C ldd "$BUSYBOX" >/dev/null 2>&1; then
    die "$BUSYBOX is dynamically linked; install the Debian package busybox-static (it replaces busybox)"
fi

# ---- fio ----------------------------------------------------------------------------
FIO=/usr/bin/fio
[ -x "$FIO" ] || die "$FIO not found; install the Debian package fio"

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/vhostblk-initrd.XXXXXX")
cleanup() { rm -rf "$STAGE" "${OUT}.tmp.$$"; }
trap cleanup EXIT

mkdir -p "$STAGE"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,etc,root,lib/modules/vhostblk}
cp "$BUSYBOX" "$STAGE/bin/busybox"
# applet symlinks at the paths busybox itself reports (bin/sh, sbin/insmod, usr/bin/...)
"$BUSYBOX" --list-full | while read -r applet; do
    [ -n "$applet" ] || continue
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$STAGE/$(dirname "$applet")"
    ln -sf /bin/busybox "$STAGE/$applet"
done
[ -e "$STAGE/bin/sh" ] || ln -sf /bin/busybox "$STAGE/bin/sh"
if [ "$(id -u)" = 0 ]; then
    mknod -m 600 "$STAGE/dev/console" c 5 1
    mknod -m 666 "$STAGE/dev/null" c 1 3
fi

# ---- modules in dependency order ----------------------------------------------------
WANT="virtio_pci virtio_blk"
ORDER=()
declare -A SEEN=()
visit() {
    local m=$1 deps d
    [ -n "${SEEN[$m]:-}" ] && return 0
    SEEN[$m]=1
    local file
    file=$(modinfo -k "$KVER" -n "$m" 2>/dev/null) || die "kernel module $m not found for $KVER"
    case "$file" in
        "(builtin)"|"") return 0 ;;  # built into the kernel: nothing to load
    esac
    deps=$(modinfo -k "$KVER" -F depends "$m")
    for d in ${deps//,/ }; do visit "$d"; done
    ORDER+=("$m")
}
for m in $WANT; do visit "$m"; done

for m in "${ORDER[@]}"; do
    src=$(modinfo -k "$KVER" -n "$m")
    dst="$STAGE/lib/modules/vhostblk/$m.ko"
    # busybox insmod cannot be relied on for compressed modules: decompress now
    case "$src" in
        *.ko.xz)  need xz xz-utils; xz -dc "$src" > "$dst" ;;
        *.ko.zst) need zstd zstd; zstd -q -dc "$src" > "$dst" ;;
        *.ko.gz)  gzip -dc "$src" > "$dst" ;;
        *.ko)     cp "$src" "$dst" ;;
        *) die "unexpected module file $src" ;;
    esac
    echo "$m.ko" >> "$STAGE/lib/modules/vhostblk/modules.order"
done
echo "modules: ${ORDER[*]}"

# ---- fio and its shared libraries (same paths as on the host) -------------------------
copy_file() {
    local p=$1
    mkdir -p "$STAGE$(dirname "$p")"
    cp -L "$p" "$STAGE$p"
}
copy_file "$FIO"
libs=$(LC_ALL=C ldd "$FIO" | awk '/=>/ { if ($3 ~ /^\//) print $3; next } $1 ~ /^\// { print $1 }')
[ -n "$libs" ] || die "ldd $FIO listed no libraries"
if LC_ALL=C ldd "$FIO" | grep -q 'not found'; then
    die "fio has unresolved libraries: $(ldd "$FIO" | grep 'not found' | tr '\n' ' ')"
fi
for l in $libs; do copy_file "$l"; done
# Debian's merged /usr: ldd may report /lib/... while the loader path is /lib64/...
[ -e "$STAGE/lib64/ld-linux-x86-64.so.2" ] || die "dynamic loader /lib64/ld-linux-x86-64.so.2 not copied"

install -m 0755 "$INIT_SH" "$STAGE/init"

# Sanity check (as root): can fio start from the staged tree alone?
if [ "$(id -u)" = 0 ] && command -v chroot >/dev/null 2>&1; then
    chroot "$STAGE" /usr/bin/fio --version >/dev/null 2>&1 || die "fio does not start inside the staged initramfs (missing library?)"
    chroot "$STAGE" /bin/sh -n /init || die "init.sh has a syntax error"
fi

mkdir -p "$(dirname "$OUT")"
(cd "$STAGE" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) \
    | gzip -n -6 > "${OUT}.tmp.$$"
mv -f "${OUT}.tmp.$$" "$OUT"
echo "$KERNEL" > "${OUT}.kernel"
echo "initrd: $OUT ($(du -h "$OUT" | cut -f1)), kernel: $KERNEL"
