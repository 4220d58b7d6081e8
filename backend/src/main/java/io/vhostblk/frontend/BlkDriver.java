package io.vhostblk.frontend;

import io.vhostblk.blk.BlkRequest;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * virtio-blk requests on one {@link DriverQueue}: what a guest's virtio_blk driver puts in the
 * ring.
 *
 * <p>Request slots are preallocated in guest memory: per slot a 64-byte block with the request
 * header (16 bytes), a discard/write-zeroes segment (16 bytes) and the status byte, plus a data
 * buffer of {@code maxDataBytes} (page aligned). The async API ({@link #acquire},
 * {@link #submit}, {@link #publish}, {@link #poll}, {@link #status}, {@link #release}) allocates
 * nothing; the sync API ({@link #read}, {@link #write}, {@link #flush}, {@link #getId},
 * {@link #discard}, {@link #writeZeroes}, {@link #execute}) is for tests and waits for the one
 * request it issued.
 *
 * <p>Chains are {@code header (R) | data x N (R for OUT, W for IN/GET_ID) | status (W)}; the
 * data buffer can be spread over N descriptors ({@link #dataSegments(int)} or per call), and the
 * whole chain can go into an indirect table ({@link #indirect(boolean)}). The status byte is
 * preset to {@link #STATUS_NOT_WRITTEN} so a device that completes without writing it is caught.
 */
public final class BlkDriver {
    public static final int META_SIZE = 64;
    private static final int META_DWZ = 16;
    private static final int META_STATUS = 32;
    /** Status value before the device wrote one. */
    public static final int STATUS_NOT_WRITTEN = 0xFF;
    public static final long DEFAULT_SYNC_TIMEOUT_NANOS = 30_000_000_000L;

    private final DriverQueue q;
    private final GuestMemory mem;
    private final int slots;
    private final int maxData;
    private final long dataStride;
    private final long metaGpa;
    private final MemorySegment meta;
    private final long dataGpa;
    private final MemorySegment data;
    private final int[] freeSlots;
    private int freeCount;
    private final boolean[] busy;
    private final int[] usedLen;
    private boolean indirect;
    private int dataSegments = 1;
    private long syncTimeoutNanos = DEFAULT_SYNC_TIMEOUT_NANOS;

    /**
     * {@code slots} request slots with data buffers of {@code maxDataBytes} each, allocated in
     * the queue's guest memory (one region per allocation, so each slot buffer is contiguous).
     */
    public BlkDriver(DriverQueue q, int slots, int maxDataBytes) {
        if (slots < 1) {
            throw new IllegalArgumentException("slots " + slots);
        }
        this.q = q;
        this.mem = q.memory();
        this.slots = slots;
        this.maxData = Math.max(maxDataBytes, BlkRequest.SECTOR_SIZE);
        this.dataStride = GuestMemory.alignUp(maxData, GuestMemory.PAGE);
        this.metaGpa = mem.allocate((long) META_SIZE * slots, GuestMemory.PAGE);
        this.meta = mem.hostView(metaGpa, (long) META_SIZE * slots);
        this.dataGpa = mem.allocate(dataStride * slots, GuestMemory.PAGE);
        this.data = mem.hostView(dataGpa, dataStride * slots);
        this.freeSlots = new int[slots];
        for (int i = 0; i < slots; i++) {
            freeSlots[i] = slots - 1 - i;
        }
        this.freeCount = slots;
        this.busy = new boolean[slots];
        this.usedLen = new int[slots];
    }

    public DriverQueue queue() {
        return q;
    }

    public int slots() {
        return slots;
    }

    public int maxDataBytes() {
        return maxData;
    }

    /** Puts each chain into an indirect table (the queue needs tables of ≥ 2 + data segments). */
    public BlkDriver indirect(boolean on) {
        if (on && q.indirectMax() == 0) {
            throw new IllegalStateException("queue " + q.index() + " has no indirect tables");
        }
        this.indirect = on;
        return this;
    }

    public boolean indirect() {
        return indirect;
    }

    /** Spreads the data buffer of slot requests over {@code n} descriptors. */
    public BlkDriver dataSegments(int n) {
        if (n < 1) {
            throw new IllegalArgumentException("segments " + n);
        }
        this.dataSegments = n;
        return this;
    }

    public BlkDriver syncTimeoutNanos(long nanos) {
        this.syncTimeoutNanos = nanos;
        return this;
    }

    // ------------------------------------------------------------------ slots

    /** Takes a free slot, or -1 if all are in use. */
    public int acquire() {
        if (freeCount == 0) {
            return -1;
        }
        int s = freeSlots[--freeCount];
        busy[s] = true;
        return s;
    }

    public void release(int slot) {
        if (!busy[slot]) {
            throw new IllegalStateException("slot " + slot + " is not in use");
        }
        busy[slot] = false;
        freeSlots[freeCount++] = slot;
    }

    public int freeSlots() {
        return freeCount;
    }

    /** Host view of the slot's data buffer ({@link #maxDataBytes} bytes). */
    public MemorySegment data(int slot) {
        return data.asSlice(slot * dataStride, maxData);
    }

    public long dataGpa(int slot) {
        return dataGpa + slot * dataStride;
    }

    private long metaOff(int slot) {
        return (long) slot * META_SIZE;
    }

    // ------------------------------------------------------------------ submission

    /** Queues a request on the slot's own data buffer ({@code dataLen} bytes, the configured segments). */
    public boolean submit(int slot, int type, long sector, int dataLen) {
        if (dataLen > maxData) {
            throw new IllegalArgumentException("data length " + dataLen + " exceeds the slot buffer of " + maxData);
        }
        return submit(slot, type, sector, dataGpa(slot), dataLen, dataSegments);
    }

    /**
     * Queues a request whose data is {@code [gpa, gpa+len)} of guest memory (any buffer, may
     * straddle regions) split over {@code segments} descriptors. Direction follows the type:
     * device-writable for IN and GET_ID, device-readable otherwise. Not visible to the device
     * before {@link #publish}. Returns false if the ring has no room.
     */
    public boolean submit(int slot, int type, long sector, long gpa, int len, int segments) {
        boolean deviceWrites = type == BlkRequest.T_IN || type == BlkRequest.T_GET_ID;
        return submitRaw(slot, type, sector, gpa, len, segments, deviceWrites);
    }

    /** As {@link #submit(int, int, long, long, int, int)} with an explicit data direction (for odd types). */
    public boolean submitRaw(int slot, int type, long sector, long gpa, int len, int segments, boolean deviceWrites) {
        header(slot, type, sector);
        q.begin().readable(metaGpa + metaOff(slot), BlkRequest.HEADER_SIZE);
        if (len > 0) {
            addSplit(gpa, len, segments, deviceWrites);
        }
        return finish(slot);
    }

    /** Queues a request with explicitly sized data segments laid end to end from {@code gpa}. */
    public boolean submitSegments(int slot, int type, long sector, long gpa, int[] segmentLengths, boolean deviceWrites) {
        header(slot, type, sector);
        q.begin().readable(metaGpa + metaOff(slot), BlkRequest.HEADER_SIZE);
        long a = gpa;
        for (int l : segmentLengths) {
            if (deviceWrites) {
                q.writable(a, l);
            } else {
                q.readable(a, l);
            }
            a += l;
        }
        return finish(slot);
    }

    /** Queues a DISCARD or WRITE_ZEROES with one segment {@code (sector, numSectors, flags)}. */
    public boolean submitDiscardLike(int slot, int type, long sector, int numSectors, int flags) {
        header(slot, type, 0);
        long o = metaOff(slot) + META_DWZ;
        meta.set(JAVA_LONG, o, sector);
        meta.set(JAVA_INT, o + 8, numSectors);
        meta.set(JAVA_INT, o + 12, flags);
        q.begin().readable(metaGpa + metaOff(slot), BlkRequest.HEADER_SIZE)
                .readable(metaGpa + o, BlkRequest.DWZ_SEGMENT_SIZE);
        return finish(slot);
    }

    private void header(int slot, int type, long sector) {
        long o = metaOff(slot);
        meta.set(JAVA_INT, o, type);
        meta.set(JAVA_INT, o + 4, 0);
        meta.set(JAVA_LONG, o + 8, sector);
        meta.set(JAVA_BYTE, o + META_STATUS, (byte) STATUS_NOT_WRITTEN);
    }

    private boolean finish(int slot) {
        q.writable(metaGpa + metaOff(slot) + META_STATUS, 1);
        return q.commit(slot, indirect) >= 0;
    }

    /**
     * Splits {@code len} bytes into {@code n} descriptors: at 512-byte boundaries when the length
     * allows it, at arbitrary byte boundaries otherwise.
     */
    private void addSplit(long gpa, int len, int n, boolean deviceWrites) {
        if (n > len) {
            throw new IllegalArgumentException(len + " bytes cannot be split into " + n + " segments");
        }
        int sectors = len >>> BlkRequest.SECTOR_SHIFT;
        boolean bySector = (len & (BlkRequest.SECTOR_SIZE - 1)) == 0 && sectors >= n;
        long start = 0;
        for (int i = 1; i <= n; i++) {
            long end;
            if (i == n) {
                end = len;
            } else if (bySector) {
                end = ((long) i * sectors / n) << BlkRequest.SECTOR_SHIFT;
            } else {
                end = (long) i * len / n;
            }
            int l = (int) (end - start);
            if (deviceWrites) {
                q.writable(gpa + start, l);
            } else {
                q.readable(gpa + start, l);
            }
            start = end;
        }
    }

    /** Makes queued requests visible to the device; kicks if it wants. */
    public boolean publish() {
        return q.publish();
    }

    // ------------------------------------------------------------------ completion

    /** Reaps one completion: returns its slot (still acquired) or -1. */
    public int poll() {
        int slot = q.reap();
        if (slot >= 0) {
            usedLen[slot] = q.lastUsedLen();
        }
        return slot;
    }

    /** The status byte of the slot's last request (0 OK, 1 IOERR, 2 UNSUPP, 0xFF never written). */
    public int status(int slot) {
        return Byte.toUnsignedInt(meta.get(JAVA_BYTE, metaOff(slot) + META_STATUS));
    }

    /** The used length the device reported for the slot's last request. */
    public int usedLen(int slot) {
        return usedLen[slot];
    }

    /** Waits for completions (see {@link DriverQueue#awaitUsed(long)}). */
    public boolean await(long timeoutNanos) {
        return q.awaitUsed(timeoutNanos);
    }

    // ------------------------------------------------------------------ sync API

    /** Issues one request and waits for it; returns its status. No async request may be in flight. */
    public int execute(int type, long sector, long gpa, int len, int segments) {
        int slot = begin();
        try {
            if (!submit(slot, type, sector, gpa, len, segments)) {
                throw new IllegalStateException("queue " + q.index() + " has no room for " + (segments + 2) + " descriptors");
            }
            return complete(slot);
        } finally {
            release(slot);
        }
    }

    /** As {@link #execute} with explicit segment lengths. */
    public int executeSegments(int type, long sector, long gpa, int[] segmentLengths, boolean deviceWrites) {
        int slot = begin();
        try {
            if (!submitSegments(slot, type, sector, gpa, segmentLengths, deviceWrites)) {
                throw new IllegalStateException("queue " + q.index() + " has no room");
            }
            return complete(slot);
        } finally {
            release(slot);
        }
    }

    public int read(long sector, long gpa, int len) {
        return read(sector, gpa, len, 1);
    }

    public int read(long sector, long gpa, int len, int segments) {
        return execute(BlkRequest.T_IN, sector, gpa, len, segments);
    }

    public int write(long sector, long gpa, int len) {
        return write(sector, gpa, len, 1);
    }

    public int write(long sector, long gpa, int len, int segments) {
        return execute(BlkRequest.T_OUT, sector, gpa, len, segments);
    }

    public int flush() {
        return execute(BlkRequest.T_FLUSH, 0, 0, 0, 0);
    }

    /** GET_ID into the slot buffer; returns the id (up to the first NUL) or throws on a bad status. */
    public String getId() {
        int slot = begin();
        try {
            long gpa = dataGpa(slot);
            mem.fill(gpa, BlkRequest.ID_BYTES, (byte) 0);
            if (!submit(slot, BlkRequest.T_GET_ID, 0, gpa, BlkRequest.ID_BYTES, 1)) {
                throw new IllegalStateException("queue " + q.index() + " has no room");
            }
            int st = complete(slot);
            if (st != BlkRequest.S_OK) {
                throw new IllegalStateException("GET_ID failed with status " + st);
            }
            byte[] id = mem.read(gpa, BlkRequest.ID_BYTES);
            int n = 0;
            while (n < id.length && id[n] != 0) {
                n++;
            }
            return new String(id, 0, n, StandardCharsets.US_ASCII);
        } finally {
            release(slot);
        }
    }

    public int discard(long sector, int numSectors, int flags) {
        return discardLike(BlkRequest.T_DISCARD, sector, numSectors, flags);
    }

    public int writeZeroes(long sector, int numSectors, boolean unmap) {
        return discardLike(BlkRequest.T_WRITE_ZEROES, sector, numSectors, unmap ? BlkRequest.DWZ_FLAG_UNMAP : 0);
    }

    private int discardLike(int type, long sector, int numSectors, int flags) {
        int slot = begin();
        try {
            if (!submitDiscardLike(slot, type, sector, numSectors, flags)) {
                throw new IllegalStateException("queue " + q.index() + " has no room");
            }
            return complete(slot);
        } finally {
            release(slot);
        }
    }

    private int begin() {
        if (q.inFlight() != 0) {
            throw new IllegalStateException("sync request on queue " + q.index() + " while " + q.inFlight() + " requests are in flight");
        }
        int slot = acquire();
        if (slot < 0) {
            throw new IllegalStateException("no free slot");
        }
        return slot;
    }

    private int complete(int slot) {
        publish();
        long deadline = System.nanoTime() + syncTimeoutNanos;
        while (true) {
            int s = poll();
            if (s == slot) {
                return status(slot);
            }
            if (s >= 0) {
                throw new IllegalStateException("unexpected completion of slot " + s);
            }
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                throw new IllegalStateException("request on queue " + q.index() + " not completed within "
                        + syncTimeoutNanos / 1_000_000 + " ms (" + q + ")");
            }
            q.awaitUsed(left);
        }
    }
}
