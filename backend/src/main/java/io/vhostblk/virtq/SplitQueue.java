package io.vhostblk.virtq;

import io.vhostblk.memory.GuestMemory;
import io.vhostblk.memory.MemoryRegion;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

import static io.vhostblk.virtq.SplitRing.*;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;
import static java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED;

/**
 * The device side of a split virtqueue living in guest memory. Owned by one worker thread.
 *
 * <p>Memory ordering (virtio 1.2 §2.7.13): {@code avail->idx} is read with acquire semantics
 * before the ring entries and descriptors it publishes; used elements are written before
 * {@code used->idx} is stored with release semantics; a full fence separates that store from
 * reading {@code used_event}/{@code avail->flags} when deciding to notify, and separates writing
 * {@code avail_event} from re-reading {@code avail->idx} before sleeping.
 *
 * <p>Everything read from guest memory is validated: ring indices beyond the queue size mark
 * the queue broken, descriptor chains are walked with loop, range and layout checks.
 */
public final class SplitQueue {
    private static final VarHandle U16 = ValueLayout.JAVA_SHORT.varHandle();

    private final int size;
    private final MemorySegment desc;
    private final MemorySegment avail;
    private final MemorySegment used;
    private final GuestMemory memory;
    private final boolean eventIdx;
    private final boolean indirect;
    private final long usedEventOff;
    private final long availEventOff;

    private int lastAvail;
    private int usedIdx;
    private int signalledUsed;
    private boolean signalledValid;
    private boolean broken;

    /**
     * @param desc/avail/used the three ring areas, already translated and bounds-checked
     * @param lastAvail the ring base (SET_VRING_BASE): the next avail entry to consume
     */
    public SplitQueue(int size, MemorySegment desc, MemorySegment avail, MemorySegment used, GuestMemory memory,
                      boolean eventIdx, boolean indirect, int lastAvail) {
        if (size <= 0 || size > MAX_QUEUE_SIZE || Integer.bitCount(size) != 1) {
            throw new IllegalArgumentException("queue size " + size + " is not a power of two up to " + MAX_QUEUE_SIZE);
        }
        if (desc.byteSize() < descTableSize(size) || avail.byteSize() < availSize(size) || used.byteSize() < usedSize(size)) {
            throw new IllegalArgumentException("ring areas too small for queue size " + size);
        }
        this.size = size;
        this.desc = desc;
        this.avail = avail;
        this.used = used;
        this.memory = memory;
        this.eventIdx = eventIdx;
        this.indirect = indirect;
        this.usedEventOff = usedEventOffset(size);
        this.availEventOff = availEventOffset(size);
        this.lastAvail = lastAvail & 0xFFFF;
        // The used index the driver last saw is whatever is in the ring now.
        this.usedIdx = Short.toUnsignedInt((short) U16.getAcquire(used, (long) USED_IDX));
    }

    public int size() {
        return size;
    }

    public GuestMemory memory() {
        return memory;
    }

    public int lastAvail() {
        return lastAvail;
    }

    /** Moves the next avail index (inflight recovery after a backend restart). */
    public void setLastAvail(int idx) {
        lastAvail = idx & 0xFFFF;
    }

    public int usedIdx() {
        return usedIdx;
    }

    public boolean isBroken() {
        return broken;
    }

    /** The driver's published avail index (acquire). */
    public int availIdx() {
        return Short.toUnsignedInt((short) U16.getAcquire(avail, (long) AVAIL_IDX));
    }

    /**
     * Number of chains the driver has made available and we have not popped. A count above the
     * queue size cannot come from a correct driver: the queue is marked broken and 0 returned.
     */
    public int pending() {
        if (broken) {
            return 0;
        }
        int n = (availIdx() - lastAvail) & 0xFFFF;
        if (n > size) {
            broken = true;
            return 0;
        }
        return n;
    }

    /** Pops the next available head index (call only when {@link #pending()} > 0). */
    public int popHead() {
        int head = Short.toUnsignedInt(avail.get(JAVA_SHORT, AVAIL_RING + 2L * (lastAvail & (size - 1))));
        lastAvail = (lastAvail + 1) & 0xFFFF;
        return head;
    }

    /**
     * Walks the chain starting at {@code head} into {@code out}, translating every buffer to
     * host addresses (splitting buffers that cross memory regions). Returns the number of
     * descriptors walked, or a negative {@link ChainError} code.
     */
    public int walk(int head, ChainBuffers out) {
        return walk(desc, size, head, out, memory, indirect);
    }

    /** Chain walking over any descriptor table; static so tests can drive it with crafted tables. */
    public static int walk(MemorySegment table, int tableSize, int head, ChainBuffers out, GuestMemory memory,
                           boolean indirectAllowed) {
        out.reset();
        if (head < 0 || head >= tableSize) {
            return ChainError.HEAD_OUT_OF_RANGE;
        }
        MemorySegment t = table;
        int n = tableSize;
        int idx = head;
        int visited = 0;
        int total = 0;
        boolean inIndirect = false;
        while (true) {
            long o = (long) idx * DESC_SIZE;
            long addr = t.get(JAVA_LONG_UNALIGNED, o + DESC_ADDR);
            long len = Integer.toUnsignedLong(t.get(JAVA_INT_UNALIGNED, o + DESC_LEN));
            int flags = t.get(JAVA_SHORT_UNALIGNED, o + DESC_FLAGS);
            int next = Short.toUnsignedInt(t.get(JAVA_SHORT_UNALIGNED, o + DESC_NEXT));
            if (++visited > n) {
                return ChainError.TOO_LONG;
            }
            total++;
            if ((flags & F_INDIRECT) != 0) {
                if (!indirectAllowed) {
                    return ChainError.INDIRECT_NOT_NEGOTIATED;
                }
                if (inIndirect) {
                    return ChainError.NESTED_INDIRECT;
                }
                if ((flags & F_NEXT) != 0) {
                    return ChainError.INDIRECT_WITH_NEXT;
                }
                if (len == 0 || len % DESC_SIZE != 0 || len / DESC_SIZE > MAX_QUEUE_SIZE) {
                    return ChainError.BAD_INDIRECT_TABLE;
                }
                MemorySegment it = memory.slice(addr, len);
                if (it == null) {
                    return ChainError.BAD_INDIRECT_TABLE;
                }
                t = it;
                n = (int) (len / DESC_SIZE);
                idx = 0;
                visited = 0;
                inIndirect = true;
                continue;
            }
            boolean writable = (flags & F_WRITE) != 0;
            if (!writable && out.hasWritable()) {
                return ChainError.READABLE_AFTER_WRITABLE;
            }
            if (len != 0 && Long.compareUnsigned(addr + len - 1, addr) < 0) {
                return ChainError.BAD_ADDRESS; // wraps past 2^64
            }
            while (len > 0) {
                MemoryRegion r = memory.regionOf(addr);
                if (r == null) {
                    return ChainError.BAD_ADDRESS;
                }
                long off = addr - r.guestAddr();
                long take = Math.min(r.size() - off, len);
                if (!out.add(r.segment(), off, take, writable)) {
                    return ChainError.TOO_MANY_BUFFERS;
                }
                addr += take;
                len -= take;
            }
            if ((flags & F_NEXT) == 0) {
                return total;
            }
            if (next >= n) {
                return ChainError.NEXT_OUT_OF_RANGE;
            }
            idx = next;
        }
    }

    /** Records a used element (not yet visible to the driver until {@link #publishUsed}). */
    public void addUsed(int head, int len) {
        long o = USED_RING + (long) USED_ELEM_SIZE * (usedIdx & (size - 1));
        used.set(JAVA_INT, o, head);
        used.set(JAVA_INT, o + 4, len);
        usedIdx = (usedIdx + 1) & 0xFFFF;
    }

    /** Makes every added used element visible (release store of used->idx). */
    public void publishUsed() {
        U16.setRelease(used, (long) USED_IDX, (short) usedIdx);
    }

    /**
     * Whether the driver wants an interrupt for what was published since the last one
     * (EVENT_IDX: {@code used_event}; otherwise {@code VRING_AVAIL_F_NO_INTERRUPT}).
     */
    public boolean needsNotification() {
        VarHandle.fullFence();
        if (eventIdx) {
            int ev = Short.toUnsignedInt(avail.get(JAVA_SHORT, usedEventOff));
            boolean need = !signalledValid || needEvent(ev, usedIdx, signalledUsed);
            signalledUsed = usedIdx;
            signalledValid = true;
            return need;
        }
        return (avail.get(JAVA_SHORT, AVAIL_FLAGS) & AVAIL_F_NO_INTERRUPT) == 0;
    }

    /** Asks the driver not to kick while we are polling the ring anyway. */
    public void disableNotification() {
        if (!eventIdx) {
            used.set(JAVA_SHORT, USED_FLAGS, USED_F_NO_NOTIFY);
        }
    }

    /**
     * Asks the driver to kick for the next request, then re-checks the ring. Returns true if
     * requests arrived meanwhile (the caller must process them instead of sleeping).
     */
    public boolean enableNotification() {
        if (eventIdx) {
            used.set(JAVA_SHORT, availEventOff, (short) lastAvail);
        } else {
            used.set(JAVA_SHORT, USED_FLAGS, (short) 0);
        }
        VarHandle.fullFence();
        return pending() > 0;
    }
}
