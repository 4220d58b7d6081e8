package io.vhostblk.blk;

import io.vhostblk.linux.Libc;
import io.vhostblk.virtq.ChainBuffers;
import io.vhostblk.virtq.SplitInflight;
import io.vhostblk.virtq.SplitQueue;

import java.lang.foreign.MemorySegment;

/**
 * The runtime of one virtio-blk queue inside its worker: the ring, the request slots, the
 * notification fds. Created when the ring starts, dropped when it stops; touched only by the
 * owning worker thread.
 */
public final class BlkQueue {
    /** Buffers one request may carry: seg_max data segments, header, status, region splits. */
    public static final int MAX_BUFFERS = 2 * BlkDevice.SEG_MAX + 4;

    final int vringIndex;
    final SplitQueue ring;
    final RequestSlot[] slots;
    private final int[] freeStack;
    private int freeTop;
    private final MemorySegment iovMemory;
    int inflight;
    int callFd;
    int kickFd;
    boolean dirty;
    int localIndex;
    long completed;
    /** Shared inflight tracking (INFLIGHT_SHMFD), or null. */
    final SplitInflight tracking;
    /** Heads completed since the used ring was last published (for the inflight batch). */
    final int[] batch;
    int batchCount;

    public BlkQueue(int vringIndex, SplitQueue ring, int kickFd, int callFd) {
        this(vringIndex, ring, kickFd, callFd, null);
    }

    public BlkQueue(int vringIndex, SplitQueue ring, int kickFd, int callFd, SplitInflight inflight) {
        this.tracking = inflight;
        this.batch = inflight == null ? null : new int[ring.size()];
        this.vringIndex = vringIndex;
        this.ring = ring;
        this.kickFd = kickFd;
        this.callFd = callFd;
        int n = ring.size();
        long per = ChainBuffers.bytesFor(MAX_BUFFERS);
        // Anonymous mapping: pages of slots never used are never touched.
        this.iovMemory = Libc.mmap(per * n, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_NORESERVE, -1, 0);
        this.slots = new RequestSlot[n];
        this.freeStack = new int[n];
        for (int i = 0; i < n; i++) {
            slots[i] = new RequestSlot(i, new ChainBuffers(iovMemory.asSlice(per * i, per), MAX_BUFFERS));
            freeStack[i] = n - 1 - i;
        }
        this.freeTop = n;
    }

    public int vringIndex() {
        return vringIndex;
    }

    public SplitQueue ring() {
        return ring;
    }

    public int inflight() {
        return inflight;
    }

    public int kickFd() {
        return kickFd;
    }

    public int callFd() {
        return callFd;
    }

    public void setCallFd(int fd) {
        callFd = fd;
    }

    public int localIndex() {
        return localIndex;
    }

    public void setLocalIndex(int i) {
        localIndex = i;
    }

    public long completed() {
        return completed;
    }

    RequestSlot take() {
        return freeTop == 0 ? null : slots[freeStack[--freeTop]];
    }

    void release(RequestSlot s) {
        freeStack[freeTop++] = s.index;
    }

    /** Requests the previous backend process left in flight (empty without inflight tracking). */
    public int[] resubmitList() {
        return tracking == null ? new int[0] : tracking.resubmitList();
    }

    /**
     * Publishes completed requests and interrupts the driver if it asked for it. With inflight
     * tracking the batch is linked before and cleared after the used index is published, so a
     * crash at any point leaves a region that tells exactly what to resubmit.
     */
    public void flushUsed() {
        if (!dirty) {
            return;
        }
        dirty = false;
        if (tracking != null) {
            tracking.linkBatch(batch, batchCount);
        }
        ring.publishUsed();
        if (tracking != null) {
            tracking.commitBatch(batch, batchCount, ring.usedIdx());
            batchCount = 0;
        }
        if (ring.needsNotification() && callFd >= 0) {
            io.vhostblk.linux.EventFd.signal(callFd);
        }
    }

    /** Frees the slot memory; the queue must have no request in flight. */
    public void release() {
        Libc.munmap(iovMemory);
    }
}
