package io.vhostblk.virtq;

/**
 * Layout of a split virtqueue (virtio 1.2 §2.7): descriptor table, available ring, used ring.
 * Shared by the device side ({@link SplitQueue}) and the frontend driver.
 */
public final class SplitRing {
    /** struct virtq_desc { le64 addr; le32 len; le16 flags; le16 next; } */
    public static final int DESC_SIZE = 16;
    public static final int DESC_ADDR = 0;
    public static final int DESC_LEN = 8;
    public static final int DESC_FLAGS = 12;
    public static final int DESC_NEXT = 14;

    public static final short F_NEXT = 1;
    public static final short F_WRITE = 2;
    public static final short F_INDIRECT = 4;

    /** avail: le16 flags; le16 idx; le16 ring[num]; le16 used_event (EVENT_IDX). */
    public static final int AVAIL_FLAGS = 0;
    public static final int AVAIL_IDX = 2;
    public static final int AVAIL_RING = 4;
    public static final short AVAIL_F_NO_INTERRUPT = 1;

    /** used: le16 flags; le16 idx; struct { le32 id; le32 len; } ring[num]; le16 avail_event. */
    public static final int USED_FLAGS = 0;
    public static final int USED_IDX = 2;
    public static final int USED_RING = 4;
    public static final int USED_ELEM_SIZE = 8;
    public static final short USED_F_NO_NOTIFY = 1;

    /** The largest queue a split ring may have. */
    public static final int MAX_QUEUE_SIZE = 32768;

    private SplitRing() {
    }

    public static long descTableSize(int num) {
        return (long) DESC_SIZE * num;
    }

    public static long availSize(int num) {
        return AVAIL_RING + 2L * num + 2;
    }

    public static long usedSize(int num) {
        return USED_RING + (long) USED_ELEM_SIZE * num + 2;
    }

    /** Offset of used_event inside the avail ring. */
    public static long usedEventOffset(int num) {
        return AVAIL_RING + 2L * num;
    }

    /** Offset of avail_event inside the used ring. */
    public static long availEventOffset(int num) {
        return USED_RING + (long) USED_ELEM_SIZE * num;
    }

    /**
     * vring_need_event (virtio spec 2.7.10): with EVENT_IDX, a notification is due when the
     * other side's event index lies in (old, new], all in free-running 16-bit arithmetic.
     */
    public static boolean needEvent(int eventIdx, int newIdx, int oldIdx) {
        return ((newIdx - eventIdx - 1) & 0xFFFF) < ((newIdx - oldIdx) & 0xFFFF);
    }
}
