package io.vhostblk.virtq;

import io.vhostblk.linux.Libc;

import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The buffers of one descriptor chain: device-readable entries first, then device-writable
 * ones (the order the spec mandates). Each entry is kept twice:
 * <ul>
 *   <li>as an off-heap {@code struct iovec} (host address, length) that preadv/pwritev/io_uring
 *       take as is — the buffers ARE guest memory, nothing is copied;</li>
 *   <li>as (bounds-checked region segment, offset), which is what Java code uses to read a
 *       request header or write a status byte.</li>
 * </ul>
 * One instance per request slot, allocated once; {@link #reset} reuses it.
 */
public final class ChainBuffers {
    static final int IOV_SIZE = 16;

    private final MemorySegment iov;
    private final MemorySegment[] segs;
    private final long[] offs;
    private final int capacity;
    private int count;
    private int firstWritable = -1;
    private long readableBytes;
    private long writableBytes;

    /** A buffer array with room for {@code capacity} entries; its iovecs live in {@code backing}. */
    public ChainBuffers(MemorySegment backing, int capacity) {
        this.iov = backing.asSlice(0, (long) capacity * IOV_SIZE);
        this.segs = new MemorySegment[capacity];
        this.offs = new long[capacity];
        this.capacity = capacity;
    }

    /** Bytes of native memory the iovecs of one instance with {@code capacity} entries need. */
    public static long bytesFor(int capacity) {
        return (long) capacity * IOV_SIZE;
    }

    /** Allocates a standalone instance (tests). */
    public static ChainBuffers allocate(int capacity) {
        MemorySegment m = Libc.mmap(bytesFor(capacity), Libc.PROT_READ | Libc.PROT_WRITE,
                Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS, -1, 0);
        return new ChainBuffers(m, capacity);
    }

    public void reset() {
        count = 0;
        firstWritable = -1;
        readableBytes = 0;
        writableBytes = 0;
    }

    /** Appends {@code len} bytes at {@code off} of region segment {@code seg}; false when full. */
    boolean add(MemorySegment seg, long off, long len, boolean writable) {
        if (count == capacity) {
            return false;
        }
        segs[count] = seg;
        offs[count] = off;
        long o = (long) count * IOV_SIZE;
        iov.set(JAVA_LONG, o, seg.address() + off);
        iov.set(JAVA_LONG, o + 8, len);
        if (writable) {
            if (firstWritable < 0) {
                firstWritable = count;
            }
            writableBytes += len;
        } else {
            readableBytes += len;
        }
        count++;
        return true;
    }

    public boolean hasWritable() {
        return firstWritable >= 0;
    }

    public int count() {
        return count;
    }

    /** Index of the first device-writable entry, or {@link #count()} if there is none. */
    public int firstWritable() {
        return firstWritable < 0 ? count : firstWritable;
    }

    public long readableBytes() {
        return readableBytes;
    }

    public long writableBytes() {
        return writableBytes;
    }

    public long address(int i) {
        return iov.get(JAVA_LONG, (long) i * IOV_SIZE);
    }

    public long length(int i) {
        return iov.get(JAVA_LONG, (long) i * IOV_SIZE + 8);
    }

    public MemorySegment segment(int i) {
        return segs[i];
    }

    public long offset(int i) {
        return offs[i];
    }

    /** Native address of iovec {@code i}, for preadv/io_uring. */
    public long iovAddress(int i) {
        return iov.address() + (long) i * IOV_SIZE;
    }

    /** Drops the first {@code n} bytes of entry {@code i}. */
    public void advance(int i, long n) {
        offs[i] += n;
        iov.set(JAVA_LONG, (long) i * IOV_SIZE, address(i) + n);
        iov.set(JAVA_LONG, (long) i * IOV_SIZE + 8, length(i) - n);
    }

    /** Drops the last {@code n} bytes of entry {@code i}. */
    public void truncate(int i, long n) {
        iov.set(JAVA_LONG, (long) i * IOV_SIZE + 8, length(i) - n);
    }

    /**
     * Copies {@code len} bytes starting at the beginning of entries [from, to) into {@code dst},
     * consuming them (entries are advanced). Returns the index of the first entry that still has
     * bytes, or -1 if the entries held fewer than {@code len} bytes.
     */
    public int consumeFront(int from, int to, MemorySegment dst, long len) {
        int i = from;
        long done = 0;
        while (done < len) {
            while (i < to && length(i) == 0) {
                i++;
            }
            if (i >= to) {
                return -1;
            }
            long n = Math.min(length(i), len - done);
            MemorySegment.copy(segs[i], offs[i], dst, done, n);
            advance(i, n);
            done += n;
        }
        while (i < to && length(i) == 0) {
            i++;
        }
        return i;
    }

    /** Copies up to {@code len} bytes from {@code src} into entries [from, to) in order; returns bytes copied. */
    public long fill(int from, int to, MemorySegment src, long len) {
        long done = 0;
        for (int i = from; i < to && done < len; i++) {
            long n = Math.min(length(i), len - done);
            MemorySegment.copy(src, done, segs[i], offs[i], n);
            done += n;
        }
        return done;
    }
}
