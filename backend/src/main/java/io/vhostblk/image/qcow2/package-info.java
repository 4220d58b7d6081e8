/**
 * Native qcow2 (versions 2 and 3) for the backend: {@link io.vhostblk.image.qcow2.Qcow2Image}
 * serves an image to several I/O threads at once through a scatter/gather API on raw iovec
 * arrays ({@code readv}, {@code writev}, {@code flush}, {@code discard}, {@code writeZeroes},
 * {@code close}; each returns 0 or -errno), and {@link io.vhostblk.image.qcow2.ImageTool} is
 * {@code bin/vhostblk image create|info|check|map}.
 *
 * <p>Supported: cluster sizes 512 B to 2 MiB, refcount widths 1 to 64 bits, extended L2 entries
 * (subclusters) for reading and writing, zero clusters, compressed clusters (deflate, zstd;
 * read, and copied on write), external data files (raw or not), qcow2/raw backing chains of any
 * depth with QEMU's relative path rules, internal snapshots (their shared clusters are copied on
 * write; snapshots cannot be created or applied here), lazy refcounts with repair of dirty
 * images on read-write open, persistent dirty bitmaps, QEMU-compatible OFD image locks.
 * Not supported: encryption, protocols other than local files, resizing, writing compressed
 * clusters.
 */
package io.vhostblk.image.qcow2;
