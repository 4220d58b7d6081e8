/**
 * A vhost-user-blk <em>frontend</em> in Java (the role QEMU plays), for tests and benchmarks of
 * backends without a VM.
 *
 * <ul>
 *   <li>{@link io.vhostblk.frontend.VhostUserFrontend}: the control channel — feature and
 *       protocol-feature negotiation (REPLY_ACK acknowledgements checked), config space,
 *       SET_MEM_TABLE, ring setup and teardown, plus a raw layer to send any message.</li>
 *   <li>{@link io.vhostblk.frontend.GuestMemory}: memfd-backed "guest RAM" regions, back to back
 *       in guest-physical space so buffers can straddle a region boundary.</li>
 *   <li>{@link io.vhostblk.frontend.DriverQueue}: the driver side of a split virtqueue (free list,
 *       direct/indirect chains, release/acquire index handling, EVENT_IDX, kick and interrupt
 *       suppression, sleeping on the call eventfd or busy polling).</li>
 *   <li>{@link io.vhostblk.frontend.BlkDriver}: virtio-blk requests from preallocated slots,
 *       async and sync.</li>
 *   <li>{@link io.vhostblk.frontend.BlkClient}: all of the above wired up on one socket.</li>
 * </ul>
 */
package io.vhostblk.frontend;
