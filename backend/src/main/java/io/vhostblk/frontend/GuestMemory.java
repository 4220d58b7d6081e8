package io.vhostblk.frontend;

import io.vhostblk.linux.Libc;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;

/**
 * The "guest RAM" a {@link VhostUserFrontend} shares with a backend: one or more memfd-backed
 * regions, each mapped {@code MAP_SHARED} into this process and handed to the backend with
 * SET_MEM_TABLE.
 *
 * <p>Guest-physical addresses (GPAs) are ours to choose: regions are laid out back to back from
 * {@link #DEFAULT_GPA_BASE}, so a buffer may be contiguous in guest-physical space while its two
 * halves live in two different mappings (and two different fds) on both sides, exactly the case a
 * backend must translate piecewise. The user address of a region, as sent in SET_MEM_TABLE and
 * used for SET_VRING_ADDR, is the address of its mapping in this process.
 *
 * <p>Memory is handed out by a bump allocator per region and only given back by {@link #close}.
 * Allocation is for setup; the data path only reads and writes already-allocated buffers.
 * Not thread-safe for allocation; reads and writes of distinct buffers from several threads are
 * fine.
 */
public final class GuestMemory implements AutoCloseable {
    /** Where the first region starts in guest-physical space (arbitrary, distinct from user addresses). */
    public static final long DEFAULT_GPA_BASE = 0x4000_0000L;
    public static final long PAGE = 4096;

    /** One region: memfd, its mapping here, its guest-physical range. */
    public static final class Region {
        private final int index;
        private final int fd;
        private final long gpa;
        private final long size;
        private final MemorySegment map;
        private long next;

        Region(int index, int fd, long gpa, long size, MemorySegment map) {
            this.index = index;
            this.fd = fd;
            this.gpa = gpa;
            this.size = size;
            this.map = map;
        }

        public int index() {
            return index;
        }

        public int fd() {
            return fd;
        }

        public long gpa() {
            return gpa;
        }

        public long size() {
            return size;
        }

        /** Address of the mapping in this process: the region's user_addr for the backend. */
        public long userAddr() {
            return map.address();
        }

        /** The whole mapping. */
        public MemorySegment segment() {
            return map;
        }

        /** Bytes not yet handed out by the allocator. */
        public long free() {
            return size - next;
        }

        public boolean containsGpa(long a) {
            return a >= gpa && a - gpa < size;
        }
    }

    private final List<Region> regions;
    private boolean closed;

    private GuestMemory(List<Region> regions) {
        this.regions = Collections.unmodifiableList(regions);
    }

    /** Regions of the given sizes (each rounded up to a page), back to back from {@link #DEFAULT_GPA_BASE}. */
    public static GuestMemory create(long... regionSizes) {
        return create(DEFAULT_GPA_BASE, false, regionSizes);
    }

    /**
     * Regions of the given sizes starting at guest-physical {@code gpaBase}. With {@code populate}
     * the pages are faulted in now (MAP_POPULATE) instead of on first touch.
     */
    public static GuestMemory create(long gpaBase, boolean populate, long... regionSizes) {
        if (regionSizes.length == 0 || regionSizes.length > 8) {
            throw new IllegalArgumentException("1..8 regions (one SET_MEM_TABLE carries at most 8 fds), got " + regionSizes.length);
        }
        List<Region> list = new ArrayList<>();
        long gpa = gpaBase;
        try {
            for (int i = 0; i < regionSizes.length; i++) {
                long size = alignUp(regionSizes[i], PAGE);
                if (size <= 0) {
                    throw new IllegalArgumentException("region size " + regionSizes[i]);
                }
                int fd = Libc.memfdCreate("vhostblk-guest-" + i, Libc.MFD_CLOEXEC);
                try {
                    Libc.ftruncate(fd, size);
                    MemorySegment map = Libc.mmap(size, Libc.PROT_READ | Libc.PROT_WRITE,
                            Libc.MAP_SHARED | (populate ? Libc.MAP_POPULATE : 0), fd, 0);
                    list.add(new Region(i, fd, gpa, size, map));
                } catch (RuntimeException e) {
                    Libc.closeQuietly(fd);
                    throw e;
                }
                gpa += size;
            }
        } catch (RuntimeException e) {
            for (Region r : list) {
                release(r);
            }
            throw e;
        }
        return new GuestMemory(list);
    }

    public List<Region> regions() {
        return regions;
    }

    public Region region(int i) {
        return regions.get(i);
    }

    /** The region holding guest-physical address {@code gpa}; throws if none does. */
    public Region regionOf(long gpa) {
        for (int i = 0; i < regions.size(); i++) {
            Region r = regions.get(i);
            if (r.containsGpa(gpa)) {
                return r;
            }
        }
        throw new IllegalArgumentException("GPA 0x" + Long.toHexString(gpa) + " is in no region");
    }

    /** Allocates {@code size} bytes aligned to {@code align} in the first region with room; returns the GPA. */
    public long allocate(long size, long align) {
        for (Region r : regions) {
            long off = alignUp(r.next, align);
            if (off + size <= r.size) {
                r.next = off + size;
                return r.gpa + off;
            }
        }
        throw new IllegalStateException("guest memory exhausted: no region has " + size + " free bytes");
    }

    /** Allocates in region {@code index}; returns the GPA. */
    public long allocateIn(int index, long size, long align) {
        Region r = regions.get(index);
        long off = alignUp(r.next, align);
        if (off + size > r.size) {
            throw new IllegalStateException("region " + index + " exhausted: " + size + " bytes asked, " + (r.size - off) + " free");
        }
        r.next = off + size;
        return r.gpa + off;
    }

    /**
     * Allocates a buffer of {@code size} bytes that straddles the boundary between region
     * {@code index} and region {@code index + 1}: its first {@code bytesBefore} bytes are the last
     * bytes of region {@code index}, the rest the first bytes of the next region. Both regions
     * must have their allocator untouched at the affected end (the tail of the first region is
     * consumed; the head of the second must still be free). Returns the GPA.
     */
    public long allocateStraddling(int index, long size, long bytesBefore) {
        Region a = regions.get(index);
        Region b = regions.get(index + 1);
        if (a.gpa + a.size != b.gpa) {
            throw new IllegalStateException("regions " + index + " and " + (index + 1) + " are not contiguous in GPA space");
        }
        if (bytesBefore <= 0 || bytesBefore >= size) {
            throw new IllegalArgumentException("bytesBefore must be in (0, size)");
        }
        if (a.size - a.next < bytesBefore) {
            throw new IllegalStateException("region " + index + " has only " + (a.size - a.next) + " bytes left");
        }
        if (b.next != 0 || size - bytesBefore > b.size) {
            throw new IllegalStateException("region " + (index + 1) + " head is already allocated");
        }
        a.next = a.size;
        b.next = size - bytesBefore;
        return a.gpa + a.size - bytesBefore;
    }

    /**
     * Host view of {@code [gpa, gpa+len)}, which must lie inside one region (a straddling buffer
     * has no single view: use {@link #write}, {@link #read}, {@link #fill}).
     */
    public MemorySegment hostView(long gpa, long len) {
        Region r = regionOf(gpa);
        long off = gpa - r.gpa;
        if (len < 0 || off + len > r.size) {
            throw new IllegalArgumentException("[0x" + Long.toHexString(gpa) + ", +" + len + ") leaves region " + r.index);
        }
        return r.map.asSlice(off, len);
    }

    /** True when {@code [gpa, gpa+len)} lies inside one region. */
    public boolean isContiguous(long gpa, long len) {
        Region r = regionOf(gpa);
        return gpa - r.gpa + len <= r.size;
    }

    /** User (frontend virtual) address of guest-physical {@code gpa}. */
    public long userAddr(long gpa) {
        Region r = regionOf(gpa);
        return r.map.address() + (gpa - r.gpa);
    }

    /** Copies {@code src} to guest memory at {@code gpa}, across region boundaries if need be. */
    public void write(long gpa, MemorySegment src) {
        long done = 0;
        long len = src.byteSize();
        while (done < len) {
            Region r = regionOf(gpa + done);
            long off = gpa + done - r.gpa;
            long n = Math.min(len - done, r.size - off);
            MemorySegment.copy(src, done, r.map, off, n);
            done += n;
        }
    }

    public void write(long gpa, byte[] src) {
        write(gpa, MemorySegment.ofArray(src));
    }

    /** Copies guest memory at {@code gpa} into {@code dst}, across region boundaries if need be. */
    public void read(long gpa, MemorySegment dst) {
        long done = 0;
        long len = dst.byteSize();
        while (done < len) {
            Region r = regionOf(gpa + done);
            long off = gpa + done - r.gpa;
            long n = Math.min(len - done, r.size - off);
            MemorySegment.copy(r.map, off, dst, done, n);
            done += n;
        }
    }

    public byte[] read(long gpa, int len) {
        byte[] b = new byte[len];
        read(gpa, MemorySegment.ofArray(b));
        return b;
    }

    public void fill(long gpa, long len, byte value) {
        long done = 0;
        while (done < len) {
            Region r = regionOf(gpa + done);
            long off = gpa + done - r.gpa;
            long n = Math.min(len - done, r.size - off);
            r.map.asSlice(off, n).fill(value);
            done += n;
        }
    }

    public byte readByte(long gpa) {
        Region r = regionOf(gpa);
        return r.map.get(JAVA_BYTE, gpa - r.gpa);
    }

    static long alignUp(long v, long align) {
        if (align <= 1) {
            return v;
        }
        if (Long.bitCount(align) != 1) {
            throw new IllegalArgumentException("alignment " + align + " is not a power of two");
        }
        return (v + align - 1) & -align;
    }

    private static void release(Region r) {
        try {
            Libc.munmap(r.map);
        } finally {
            Libc.closeQuietly(r.fd);
        }
    }

    /** Unmaps and closes all regions. The backend keeps its own mappings until it drops them. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        for (Region r : regions) {
            release(r);
        }
    }
}
