/**
 * {@code vhostblk-bench} ({@link io.vhostblk.bench.BenchMain}, launched by
 * {@code bin/vhostblk-bench}): fio-like load on a vhost-user-blk backend through
 * {@link io.vhostblk.frontend.BlkClient}, one thread per queue, with latency percentiles, the
 * benchmark's own CPU use and a stamped-pattern data verification mode.
 *
 * <p>{@code bench/compare} ({@link io.vhostblk.bench.CompareMain}): host fio vs
 * qemu-storage-daemon vs vhostblk on the same files, driven by vhostblk-bench, with medians,
 * ratios, the targets of issues 3 (raw files) and 4 (qcow2) and JSON / Markdown / SVG output
 * (see bench/README.md).
 */
package io.vhostblk.bench;
