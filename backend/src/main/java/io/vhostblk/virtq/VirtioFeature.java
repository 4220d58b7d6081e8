package io.vhostblk.virtq;

/** Transport feature bits of virtio 1.x that concern the virtqueues. */
public final class VirtioFeature {
    public static final int NOTIFY_ON_EMPTY = 24;
    public static final int ANY_LAYOUT = 27;
    public static final int RING_INDIRECT_DESC = 28;
    public static final int RING_EVENT_IDX = 29;
    public static final int VERSION_1 = 32;
    public static final int ACCESS_PLATFORM = 33;
    public static final int RING_PACKED = 34;
    public static final int IN_ORDER = 35;

    private VirtioFeature() {
    }

    public static long bit(int b) {
        return 1L << b;
    }

    public static boolean has(long features, int b) {
        return (features & (1L << b)) != 0;
    }
}
