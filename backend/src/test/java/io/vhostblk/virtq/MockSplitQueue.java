package io.vhostblk.virtq;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

import static io.vhostblk.virtq.SplitRing.*;

/**
 * Test support, the driver side of a split virtqueue in a {@link MockGuestMemory} (in the spirit
 * of rust-vmm's {@code MockSplitQueue}): writes descriptors, indirect tables and avail entries,
 * reads the used ring, and builds the device-side {@link SplitQueue} over the same memory.
 *
 * <p>Layout from {@link #at}: descriptor table at {@code base}, avail ring right after it, used
 * ring after that at the next 4-byte boundary (virtio 1.2 §2.7 alignment rules).
 */
public final class MockSplitQueue {
    private static final VarHandle U16 = ValueLayout.JAVA_SHORT.varHandle();

    /** One descriptor as the driver writes it. */
    public record Desc(long addr, int len, int flags, int next) {
        /** A device-readable buffer (flags and next filled in by {@link #addChain}). */
        public static Desc r(long addr, int len) {
            return new Desc(addr, len, 0, 0);
        }

        /** A device-writable buffer. */
        public static Desc w(long addr, int len) {
            return new Desc(addr, len, F_WRITE, 0);
        }

        public Desc withFlags(int f) {
            return new Desc(addr, len, f, next);
        }
    }

    private final MockGuestMemory mem;
    private final int size;
    private final long descGpa;
    private final long availGpa;
    private final long usedGpa;
    private int nextFree;

    public MockSplitQueue(MockGuestMemory mem, int size, long descGpa, long availGpa, long usedGpa) {
        this.mem = mem;
        this.size = size;
        this.descGpa = descGpa;
        this.availGpa = availGpa;
        this.usedGpa = usedGpa;
        mem.fill(descGpa, (int) descTableSize(size), (byte) 0);
        mem.fill(availGpa, (int) availSize(size), (byte) 0);
        mem.fill(usedGpa, (int) usedSize(size), (byte) 0);
    }

    /** The three areas packed from {@code base} (which must be 16-byte aligned). */
    public static MockSplitQueue at(MockGuestMemory mem, int size, long base) {
        long desc = base;
        long avail = desc + descTableSize(size);
        long used = (avail + availSize(size) + 3) & ~3L;
        return new MockSplitQueue(mem, size, desc, avail, used);
    }

    /** First guest address after the rings (where test buffers may go). */
    public long end() {
        return usedGpa + usedSize(size);
    }

    public int size() {
        return size;
    }

    public MockGuestMemory guest() {
        return mem;
    }

    public long descGpa() {
        return descGpa;
    }

    public long availGpa() {
        return availGpa;
    }

    public long usedGpa() {
        return usedGpa;
    }

    /** The device side over these rings, translated through user addresses as the backend does. */
    public SplitQueue create(boolean eventIdx, boolean indirect, int base) {
        MemorySegment d = mem.memory().sliceUser(mem.userAddress(descGpa), descTableSize(size));
        MemorySegment a = mem.memory().sliceUser(mem.userAddress(availGpa), availSize(size));
        MemorySegment u = mem.memory().sliceUser(mem.userAddress(usedGpa), usedSize(size));
        return new SplitQueue(size, d, a, u, mem.memory(), eventIdx, indirect, base);
    }

    // ---------------------------------------------------------------- descriptors

    public void writeDesc(int i, Desc d) {
        writeDescAt(descGpa + (long) DESC_SIZE * i, d);
    }

    public void writeDesc(int i, long addr, int len, int flags, int next) {
        writeDesc(i, new Desc(addr, len, flags, next));
    }

    public Desc readDesc(int i) {
        long g = descGpa + (long) DESC_SIZE * i;
        return new Desc(mem.getLong(g + DESC_ADDR), mem.getInt(g + DESC_LEN), mem.getShort(g + DESC_FLAGS),
                mem.getShort(g + DESC_NEXT));
    }

    /** Writes an indirect table (flags and next exactly as given) at any, even unaligned, address. */
    public void writeTable(long gpa, Desc... table) {
        for (int i = 0; i < table.length; i++) {
            writeDescAt(gpa + (long) DESC_SIZE * i, table[i]);
        }
    }

    private void writeDescAt(long g, Desc d) {
        mem.putLong(g + DESC_ADDR, d.addr());
        mem.putInt(g + DESC_LEN, d.len());
        mem.putShort(g + DESC_FLAGS, d.flags());
        mem.putShort(g + DESC_NEXT, d.next());
    }

    /**
     * Writes {@code parts} into free slots of the descriptor table, linking them with NEXT (the
     * parts' own flags are kept, NEXT and next are set here); returns the head index.
     */
    public int addChain(Desc... parts) {
        int[] idx = new int[parts.length];
        for (int i = 0; i < parts.length; i++) {
            idx[i] = nextFree;
            nextFree = (nextFree + 1) % size;
        }
        for (int i = 0; i < parts.length; i++) {
            boolean more = i + 1 < parts.length;
            int flags = parts[i].flags() & ~F_NEXT | (more ? F_NEXT : 0);
            writeDesc(idx[i], new Desc(parts[i].addr(), parts[i].len(), flags, more ? idx[i + 1] : 0));
        }
        return idx[0];
    }

    /** Writes {@code parts} as an indirect table at {@code tableGpa} and a main descriptor pointing at it. */
    public int addIndirectChain(long tableGpa, Desc... parts) {
        Desc[] t = new Desc[parts.length];
        for (int i = 0; i < parts.length; i++) {
            boolean more = i + 1 < parts.length;
            t[i] = new Desc(parts[i].addr(), parts[i].len(), parts[i].flags() & ~F_NEXT | (more ? F_NEXT : 0), more ? i + 1 : 0);
        }
        writeTable(tableGpa, t);
        int head = nextFree;
        nextFree = (nextFree + 1) % size;
        writeDesc(head, new Desc(tableGpa, parts.length * DESC_SIZE, F_INDIRECT, 0));
        return head;
    }

    // ---------------------------------------------------------------- avail ring (driver writes)

    public int availIdx() {
        return mem.getShort(availGpa + AVAIL_IDX);
    }

    /** Stores avail->idx with release semantics, as a driver publishes it. */
    public void setAvailIdx(int idx) {
        U16.setRelease(mem.slice(availGpa, availSize(size)), (long) AVAIL_IDX, (short) idx);
    }

    public void setAvailFlags(int flags) {
        mem.putShort(availGpa + AVAIL_FLAGS, flags);
    }

    /** used_event, the driver's interrupt threshold (EVENT_IDX). */
    public void setUsedEvent(int v) {
        mem.putShort(availGpa + usedEventOffset(size), v);
    }

    /** Writes {@code head} into the next avail slot without publishing it. */
    public void putAvailEntry(int position, int head) {
        mem.putShort(availGpa + AVAIL_RING + 2L * (position & (size - 1)), head);
    }

    /** Makes {@code head} available: ring entry first, then a release store of the new avail->idx. */
    public void publish(int head) {
        int idx = availIdx();
        putAvailEntry(idx, head);
        setAvailIdx((idx + 1) & 0xFFFF);
    }

    // ---------------------------------------------------------------- used ring (driver reads)

    /** used->idx read with acquire semantics. */
    public int usedIdx() {
        return Short.toUnsignedInt((short) U16.getAcquire(mem.slice(usedGpa, usedSize(size)), (long) USED_IDX));
    }

    /** Sets used->idx (only before the device side is created: it reads its start from there). */
    public void setUsedIdx(int idx) {
        mem.putShort(usedGpa + USED_IDX, idx);
    }

    public int usedFlags() {
        return mem.getShort(usedGpa + USED_FLAGS);
    }

    /** id of the used element at free-running index {@code position}. */
    public int usedId(int position) {
        return mem.getInt(usedGpa + USED_RING + (long) USED_ELEM_SIZE * (position & (size - 1)));
    }

    /** len of the used element at free-running index {@code position}. */
    public int usedLen(int position) {
        return mem.getInt(usedGpa + USED_RING + (long) USED_ELEM_SIZE * (position & (size - 1)) + 4);
    }

    /** avail_event, the device's kick threshold (EVENT_IDX). */
    public int availEvent() {
        return mem.getShort(usedGpa + availEventOffset(size));
    }

    public void setAvailEvent(int v) {
        mem.putShort(usedGpa + availEventOffset(size), v);
    }
}
