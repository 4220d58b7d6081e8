/**
 * {@code vhostblk-bench} ({@link io.vhostblk.bench.BenchMain}, launched by
 * {@code bin/vhostblk-bench}): fio-like load on a vhost-user-blk backend through
 * {@link io.vhostblk.frontend.BlkClient}, one thread per queue, with latency percentiles, the
 * benchmark's own CPU use and a stamped-pattern data verification mode.
 */
package io.vhostblk.bench;
