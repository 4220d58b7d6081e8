#!/bin/sh
# /init of the vhostblk test guest (runs under static busybox sh, PID 1).
#
# Kernel command line:
#   vhostblk.test=NAME            fio | dd | serial | discard | reboot | info
#   vhostblk.args=k1:v1,k2:v2     optional per-test arguments (see each test below), and for
#                                 every test: devs:vda+vdb (run the test on each disk in turn,
#                                 default vda), wait_s:N (seconds to wait for each disk to appear,
#                                 default 15; a hotplugged disk may come later), linger_s:N (stay
#                                 up N seconds after the DONE line before powering off)
#
# Output on the serial console (machine readable, one per line):
#   VHOSTBLK-RESULT key=value     any number of them
#   VHOSTBLK-DONE rc=N            exactly once per test run, N=0 means success
# then the guest powers off. The disk under test is /dev/vda.

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu/ceph
DEV=/dev/vda
DEVNAME=vda

mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o size=256m tmpfs /tmp
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1

result() { echo "VHOSTBLK-RESULT $1=$2"; }
log() { echo "vhostblk-guest: $*"; }

finish() {
    # $1 = rc. Prints the single DONE line and powers off.
    echo "VHOSTBLK-DONE rc=$1"
    sync
    _linger=$(arg linger_s 0)
    if [ "$_linger" -gt 0 ] 2>/dev/null; then
        echo "VHOSTBLK-LINGER ${_linger}s"
        sleep "$_linger"
    fi
    sleep 1   # let the UART drain before the machine disappears
    poweroff -f
    sleep 10
    exit 0    # not reached; PID 1 exiting would panic the kernel
}

# ---- kernel command line -------------------------------------------------------------
TEST=
ARGS=
for tok in $(cat /proc/cmdline); do
    case "$tok" in
        vhostblk.test=*) TEST=${tok#vhostblk.test=} ;;
        vhostblk.args=*) ARGS=${tok#vhostblk.args=} ;;
    esac
done

# arg KEY DEFAULT: value of KEY from vhostblk.args, or DEFAULT
arg() {
    _key=$1
    _def=$2
    _old_ifs=$IFS
    IFS=,
    for _kv in $ARGS; do
        case "$_kv" in
            "$_key":*) IFS=$_old_ifs; echo "${_kv#*:}"; return 0 ;;
        esac
    done
    IFS=$_old_ifs
    echo "$_def"
}

# to_bytes 64M -> 67108864 (suffixes K M G, powers of 1024, optional trailing B/iB)
to_bytes() {
    _v=$1
    _v=${_v%iB}; _v=${_v%B}
    case "$_v" in
        *[kK]) echo $(( ${_v%?} * 1024 )) ;;
        *[mM]) echo $(( ${_v%?} * 1024 * 1024 )) ;;
        *[gG]) echo $(( ${_v%?} * 1024 * 1024 * 1024 )) ;;
        *) echo $(( _v )) ;;
    esac
}

# Number of kernel log lines that report I/O errors on the disk under test.
io_errors() {
    dmesg | grep -iE "$DEVPATTERN" | grep -ciE 'i/o error|io error|critical medium|blk_update_request|buffer i/o' || true
}

# ---- drivers ------------------------------------------------------------------------
log "loading virtio modules"
while read -r mod; do
    [ -n "$mod" ] || continue
    if ! insmod "/lib/modules/vhostblk/$mod"; then
        log "insmod $mod failed"
        result error "insmod_failed_$mod"
        finish 3
    fi
done < /lib/modules/vhostblk/modules.order
log "virtio modules loaded"

# wait_dev: waits up to wait_s seconds for $DEV; 0 if it is there
wait_dev() {
    _n=0
    _max=$(( $(arg wait_s 15) * 10 ))
    while [ ! -b "$DEV" ] && [ $_n -lt $_max ]; do sleep 0.1; _n=$((_n + 1)); done
    [ -b "$DEV" ]
}

DEVS=$(arg devs vda | tr '+' ' ')
DEVPATTERN=$(echo $DEVS | tr ' ' '|')
DEVNAME=${DEVS%% *}
DEV=/dev/$DEVNAME
if ! wait_dev; then
    log "$DEV did not appear"
    dmesg | tail -n 30
    result error no_$DEVNAME
    finish 3
fi

result test "$TEST"
result guest_cpus "$(nproc)"
result vda_size_sectors "$(cat /sys/block/$DEVNAME/size)"
result vda_queues "$(ls /sys/block/$DEVNAME/mq | wc -l)"

# ---- tests: each one sets RC ----------------------------------------------------------

# fio: mixed random read/write with crc32c verification, then a full write+verify pass.
#   args: iodepth (16), numjobs (online CPUs), size (64M, region shared out between the
#         jobs), offset (0), runtime (8 seconds of the mixed phase), bs (4k-64k)
test_fio() {
    iodepth=$(arg iodepth 16)
    numjobs=$(arg numjobs "$(nproc)")
    size=$(to_bytes "$(arg size 64M)")
    offset=$(to_bytes "$(arg offset 0)")
    runtime=$(arg runtime 8)
    bs=$(arg bs 4k-64k)
    perjob=$(( size / numjobs / 65536 * 65536 ))
    if [ "$perjob" -le 0 ]; then
        result error "fio_region_too_small"
        RC=2
        return
    fi
    # Every job owns a disjoint region [offset + i*perjob, +perjob): concurrent jobs never
    # write the same block, so a verify failure is a real data error.
    #
    # Phase 1 "mixed" (time based): randrw; verify_backlog makes fio read back and check
    #   every block shortly after writing it, so verification happens during the timed run
    #   (fio's separate verify phase is skipped for the final, time-cut pass).
    # Phase 2 "full" (size based, after a stonewall): every job writes its whole region once
    #   with random offsets and sizes, and only then reads all of it back and verifies it,
    #   which also catches writes that landed on the wrong block.
    set -- --ioengine=libaio --direct=1 --filename="$DEV" --bsrange="$bs" \
        --iodepth="$iodepth" --size="$perjob" \
        --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
        --group_reporting --output-format=terse --terse-version=3
    i=0
    while [ $i -lt "$numjobs" ]; do
        set -- "$@" --name=mixed$i --offset=$(( offset + i * perjob )) --rw=randrw \
            --rwmixread=50 --time_based --runtime="$runtime" --verify_backlog=32
        i=$((i + 1))
    done
    i=0
    while [ $i -lt "$numjobs" ]; do
        if [ $i -eq 0 ]; then set -- "$@" --name=full$i --stonewall --new_group; else set -- "$@" --name=full$i; fi
        set -- "$@" --offset=$(( offset + i * perjob )) --rw=randwrite
        i=$((i + 1))
    done
    result fio_numjobs "$numjobs"
    result fio_iodepth "$iodepth"
    result fio_region_bytes $(( perjob * numjobs ))
    log "fio $*"
    fio "$@" >/tmp/fio.out 2>/tmp/fio.err
    frc=$?
    # terse v3: 3=jobname 5=error 8=read_iops 47=write_kb 49=write_iops
    mixed=$(grep '^3;' /tmp/fio.out | awk -F';' '$3 ~ /^mixed/' | head -n 1)
    full=$(grep '^3;' /tmp/fio.out | awk -F';' '$3 ~ /^full/' | head -n 1)
    result iops_read "$(echo "$mixed" | awk -F';' '{printf "%d", $8}')"
    result iops_write "$(echo "$mixed" | awk -F';' '{printf "%d", $49}')"
    result full_iops_read "$(echo "$full" | awk -F';' '{printf "%d", $8}')"
    result full_iops_write "$(echo "$full" | awk -F';' '{printf "%d", $49}')"
    result read_kb "$(echo "$mixed" | awk -F';' '{printf "%d", $6}')"
    result write_kb "$(echo "$mixed" | awk -F';' '{printf "%d", $47}')"
    errs=$(grep '^3;' /tmp/fio.out | awk -F';' '$5 != 0 {n++} END {printf "%d", n}')
    verrs=$(grep -ciE 'verify|bad magic|bad header|crc32c' /tmp/fio.err || true)
    result fio_rc "$frc"
    result errors "$errs"
    result verify_errors "$verrs"
    if [ -s /tmp/fio.err ]; then
        head -n 20 /tmp/fio.err | sed 's/^/fio-stderr: /'
    fi
    if [ "$frc" -ne 0 ] || [ "$errs" -ne 0 ] || [ "$verrs" -ne 0 ]; then
        result verify FAILED
        RC=1
    else
        result verify OK
        RC=0
    fi
}

# dd: write N MiB of random data at an offset, read it back with O_DIRECT, compare hashes.
#   args: mib (16), offset_mib (1)
test_dd() {
    mib=$(arg mib 16)
    off=$(arg offset_mib 1)
    result dd_offset_bytes $(( off * 1024 * 1024 ))
    result dd_bytes $(( mib * 1024 * 1024 ))
    if ! dd if=/dev/urandom of=/tmp/dd.src bs=1M count="$mib" iflag=fullblock status=none; then
        result error dd_urandom_failed; RC=1; return
    fi
    w=$(sha256sum /tmp/dd.src | cut -d' ' -f1)
    result sha256_written "$w"
    if ! dd if=/tmp/dd.src of="$DEV" bs=1M seek="$off" oflag=direct conv=notrunc,fsync status=none; then
        result error dd_write_failed; RC=1; rm -f /tmp/dd.src; return
    fi
    rm -f /tmp/dd.src
    echo 3 > /proc/sys/vm/drop_caches
    if ! dd if="$DEV" of=/tmp/dd.back bs=1M skip="$off" count="$mib" iflag=direct status=none; then
        result error dd_read_failed; RC=1; return
    fi
    r=$(sha256sum /tmp/dd.back | cut -d' ' -f1)
    rm -f /tmp/dd.back
    result sha256_read "$r"
    if [ "$w" = "$r" ]; then result dd_match yes; RC=0; else result dd_match no; RC=1; fi
}

# serial: the device's serial number (virtio-blk GET_ID)
test_serial() {
    if s=$(cat /sys/block/$DEVNAME/serial 2>/dev/null); then
        result serial "$s"
        RC=0
    else
        result serial_error read_failed
        RC=1
    fi
}

# discard: write a range with dd, then blkdiscard it.
#   args: offset_mib (32), mib (16)
test_discard() {
    off=$(arg offset_mib 32)
    mib=$(arg mib 16)
    result discard_offset_bytes $(( off * 1024 * 1024 ))
    result discard_bytes $(( mib * 1024 * 1024 ))
    result discard_max_bytes "$(cat /sys/block/$DEVNAME/queue/discard_max_bytes)"
    result discard_granularity "$(cat /sys/block/$DEVNAME/queue/discard_granularity)"
    if ! dd if=/dev/urandom of="$DEV" bs=1M seek="$off" count="$mib" iflag=fullblock oflag=direct conv=notrunc,fsync status=none; then
        result error dd_write_failed; RC=1; return
    fi
    blkdiscard -o $(( off * 1024 * 1024 )) -l $(( mib * 1024 * 1024 )) "$DEV"
    drc=$?
    sync
    result discard_rc "$drc"
    RC=$drc
}

# reboot: boot counter in the last 512-byte sector. First boot stores 1 and reboots; the
# second boot runs the dd test, clears the counter and finishes.
test_reboot() {
    last=$(( $(cat /sys/block/$DEVNAME/size) - 1 ))
    cnt=$(dd if="$DEV" bs=512 skip="$last" count=1 status=none | head -c 15)
    if [ "$cnt" = "VHOSTBLK-BOOT=1" ]; then
        result boot_count 2
        test_dd
        if ! dd if=/dev/zero of="$DEV" bs=512 seek="$last" count=1 conv=notrunc,fsync status=none; then
            result error counter_clear_failed; RC=1
        fi
        return
    fi
    result boot_count 1
    if ! printf 'VHOSTBLK-BOOT=1' | dd of="$DEV" bs=512 seek="$last" count=1 conv=sync,notrunc,fsync status=none; then
        result error counter_write_failed
        RC=1
        return
    fi
    log "boot counter written, rebooting"
    sync
    sleep 1
    reboot -f
    sleep 10
    RC=1
}

# info: what the guest sees of the device
test_info() {
    q=/sys/block/$DEVNAME/queue
    result size_sectors "$(cat /sys/block/$DEVNAME/size)"
    result num_queues "$(ls /sys/block/$DEVNAME/mq | wc -l)"
    result logical_block_size "$(cat $q/logical_block_size)"
    result physical_block_size "$(cat $q/physical_block_size)"
    result discard_max_bytes "$(cat $q/discard_max_bytes)"
    result write_zeroes_max_bytes "$(cat $q/write_zeroes_max_bytes 2>/dev/null || echo 0)"
    result write_cache "$(tr ' ' '_' < $q/write_cache)"
    result read_only "$(cat /sys/block/$DEVNAME/ro)"
    result nr_requests "$(cat $q/nr_requests)"
    result max_sectors_kb "$(cat $q/max_sectors_kb)"
    RC=0
}

run_test() {
    RC=2
    case "$TEST" in
        fio) test_fio ;;
        dd) test_dd ;;
        serial) test_serial ;;
        discard) test_discard ;;
        reboot) test_reboot ;;
        info) test_info ;;
        "") log "no vhostblk.test= on the kernel command line"; result error no_test ;;
        *) log "unknown test '$TEST'"; result error unknown_test ;;
    esac
}

ALLRC=0
for DEVNAME in $DEVS; do
    DEV=/dev/$DEVNAME
    if ! wait_dev; then
        log "$DEV did not appear"
        result error no_$DEVNAME
        RC=3
    else
        w=
        run_test
        [ -n "$w" ] && result sha256_written_$DEVNAME "$w"
    fi
    result rc_$DEVNAME "$RC"
    [ "$ALLRC" -eq 0 ] && ALLRC=$RC
done
RC=$ALLRC

ioe=$(io_errors)
result io_errors "$ioe"
if [ "$ioe" -ne 0 ] && [ "$(arg allow_io_errors 0)" != 1 ] && [ "$RC" -eq 0 ]; then
    RC=1
fi
if [ "$RC" -ne 0 ]; then
    log "test failed (rc=$RC); kernel log tail:"
    dmesg | tail -n 40 | sed 's/^/guest-dmesg: /'
fi
finish "$RC"
