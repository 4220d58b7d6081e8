package io.vhostblk.blk;

import io.vhostblk.virtq.ChainBuffers;

import java.lang.foreign.MemorySegment;

/**
 * Preallocated state of one in-flight virtio-blk request; a queue has one slot per ring entry,
 * so taking a slot never fails and never allocates.
 */
public final class RequestSlot {
    final int index;
    final ChainBuffers buffers;
    int head;
    int type;
    long offset;
    long length;
    int usedLen;
    /** Where the status byte goes: a bounds-checked region segment and the offset in it. */
    MemorySegment statusSeg;
    long statusOff;
    int dataStart;
    int dataEnd;
    /** Whether the request uses the O_DIRECT fd. */
    boolean aligned;
    /** Second-chance state of write-zeroes: zero in place, then a hole, then written zeroes. */
    int phase;

    RequestSlot(int index, ChainBuffers buffers) {
        this.index = index;
        this.buffers = buffers;
    }
}
