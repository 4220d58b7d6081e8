package io.vhostblk.virtq;

import io.vhostblk.linux.Libc;
import io.vhostblk.memory.GuestMemory;
import io.vhostblk.memory.MemoryRegion;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED;

/**
 * Test support: a guest memory of one or more regions, each backed by its own anonymous mapping
 * or memfd (so regions that are contiguous in guest-physical space are NOT contiguous in the
 * host, as with real vhost-user memory tables). Byte-level helpers address memory by guest
 * address and transparently cross region boundaries.
 *
 * <p>Each region gets a distinct frontend user address ({@link #userAddress}) so vring
 * addresses can be translated the way {@code SET_VRING_ADDR} does it.
 */
public final class MockGuestMemory implements AutoCloseable {
    public enum Backing { ANONYMOUS, MEMFD }

    /** User address of region {@code i} is {@code USER_BASE + i * USER_STRIDE}. */
    public static final long USER_BASE = 0x7000_0000_0000L;
    public static final long USER_STRIDE = 0x10_0000_0000L;

    private final List<MemorySegment> mappings = new ArrayList<>();
    private final List<Integer> fds = new ArrayList<>();
    private final GuestMemory memory;
    private long allocNext;

    /** @param gpaSize pairs of (guest-physical address, size) */
    public MockGuestMemory(Backing backing, long... gpaSize) {
        if (gpaSize.length == 0 || gpaSize.length % 2 != 0) {
            throw new IllegalArgumentException("expected (gpa, size) pairs");
        }
        List<MemoryRegion> regions = new ArrayList<>();
        try {
            for (int i = 0; i < gpaSize.length / 2; i++) {
                long gpa = gpaSize[2 * i];
                long size = gpaSize[2 * i + 1];
                MemorySegment m;
                if (backing == Backing.MEMFD) {
                    int fd = Libc.memfdCreate("mock-guest-" + i, Libc.MFD_CLOEXEC);
                    fds.add(fd);
                    Libc.ftruncate(fd, size);
                    m = Libc.mmap(size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, fd, 0);
                } else {
                    m = Libc.mmap(size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS, -1, 0);
                }
                mappings.add(m);
                regions.add(MemoryRegion.ofSegment(gpa, USER_BASE + i * USER_STRIDE, m));
            }
            this.memory = GuestMemory.of(regions);
        } catch (RuntimeException e) {
            close();
            throw e;
        }
        this.allocNext = gpaSize[0];
    }

    /** Anonymous memory, regions given as (gpa, size) pairs. */
    public static MockGuestMemory anonymous(long... gpaSize) {
        return new MockGuestMemory(Backing.ANONYMOUS, gpaSize);
    }

    /** memfd-backed memory, regions given as (gpa, size) pairs. */
    public static MockGuestMemory memfd(long... gpaSize) {
        return new MockGuestMemory(Backing.MEMFD, gpaSize);
    }

    public GuestMemory memory() {
        return memory;
    }

    /** The memfd of region {@code i} in creation order (MEMFD backing only). */
    public int fd(int i) {
        return fds.get(i);
    }

    /** The region holding {@code gpa}; fails the test if there is none. */
    public MemoryRegion region(long gpa) {
        MemoryRegion r = memory.regionOf(gpa);
        if (r == null) {
            throw new IllegalArgumentException("gpa 0x" + Long.toHexString(gpa) + " is not in the mock memory");
        }
        return r;
    }

    /** Host virtual address of guest byte {@code gpa}. */
    public long host(long gpa) {
        MemoryRegion r = region(gpa);
        return r.segment().address() + (gpa - r.guestAddr());
    }

    /** The frontend user address of guest byte {@code gpa}. */
    public long userAddress(long gpa) {
        MemoryRegion r = region(gpa);
        return r.userAddr() + (gpa - r.guestAddr());
    }

    /** A view of [gpa, gpa+len), which must lie inside one region. */
    public MemorySegment slice(long gpa, long len) {
        MemorySegment s = memory.slice(gpa, len);
        if (s == null) {
            throw new IllegalArgumentException("[0x" + Long.toHexString(gpa) + ", +" + len + ") is not inside one region");
        }
        return s;
    }

    // ---------------------------------------------------------------- allocation of test buffers

    /** Next allocations start at {@code gpa}. */
    public MockGuestMemory allocateFrom(long gpa) {
        allocNext = gpa;
        return this;
    }

    /** Bump-allocates {@code len} bytes aligned to {@code align}; may cross region boundaries. */
    public long allocate(long len, long align) {
        long a = (allocNext + align - 1) & -align;
        allocNext = a + len;
        return a;
    }

    public long allocate(long len) {
        return allocate(len, 8);
    }

    // ---------------------------------------------------------------- byte access (may span regions)

    public void write(long gpa, byte[] data) {
        long done = 0;
        while (done < data.length) {
            MemoryRegion r = region(gpa + done);
            long off = gpa + done - r.guestAddr();
            long n = Math.min(r.size() - off, data.length - done);
            MemorySegment.copy(data, (int) done, r.segment(), JAVA_BYTE, off, (int) n);
            done += n;
        }
    }

    public byte[] read(long gpa, int len) {
        byte[] out = new byte[len];
        long done = 0;
        while (done < len) {
            MemoryRegion r = region(gpa + done);
            long off = gpa + done - r.guestAddr();
            long n = Math.min(r.size() - off, len - done);
            MemorySegment.copy(r.segment(), JAVA_BYTE, off, out, (int) done, (int) n);
            done += n;
        }
        return out;
    }

    public void fill(long gpa, int len, byte v) {
        byte[] b = new byte[len];
        java.util.Arrays.fill(b, v);
        write(gpa, b);
    }

    public void putByte(long gpa, int v) {
        slice(gpa, 1).set(JAVA_BYTE, 0, (byte) v);
    }

    public int getByte(long gpa) {
        return Byte.toUnsignedInt(slice(gpa, 1).get(JAVA_BYTE, 0));
    }

    public void putShort(long gpa, int v) {
        slice(gpa, 2).set(JAVA_SHORT_UNALIGNED, 0, (short) v);
    }

    public int getShort(long gpa) {
        return Short.toUnsignedInt(slice(gpa, 2).get(JAVA_SHORT_UNALIGNED, 0));
    }

    public void putInt(long gpa, int v) {
        slice(gpa, 4).set(JAVA_INT_UNALIGNED, 0, v);
    }

    public int getInt(long gpa) {
        return slice(gpa, 4).get(JAVA_INT_UNALIGNED, 0);
    }

    public void putLong(long gpa, long v) {
        slice(gpa, 8).set(JAVA_LONG_UNALIGNED, 0, v);
    }

    public long getLong(long gpa) {
        return slice(gpa, 8).get(JAVA_LONG_UNALIGNED, 0);
    }

    @Override
    public void close() {
        for (MemorySegment m : mappings) {
            Libc.munmap(m);
        }
        mappings.clear();
        for (int fd : fds) {
            Libc.closeQuietly(fd);
        }
        fds.clear();
    }
}
