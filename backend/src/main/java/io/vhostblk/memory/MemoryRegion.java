package io.vhostblk.memory;

import io.vhostblk.linux.Libc;

import java.lang.foreign.MemorySegment;

/**
 * One region of guest RAM as the frontend described it (guest-physical address, size, the
 * frontend's user address, offset into the fd) and mapped into this process.
 *
 * <p>{@link #segment()} covers exactly the region's bytes; every access through it is
 * bounds-checked by the JVM.
 */
public final class MemoryRegion {
    private final long guestAddr;
    private final long size;
    private final long userAddr;
    private final long mmapOffset;
    private final MemorySegment mapping;
    private final MemorySegment segment;
    private final boolean owned;

    private MemoryRegion(long guestAddr, long size, long userAddr, long mmapOffset, MemorySegment mapping, boolean owned) {
        this.owned = owned;
        this.guestAddr = guestAddr;
        this.size = size;
        this.userAddr = userAddr;
        this.mmapOffset = mmapOffset;
        this.mapping = mapping;
        this.segment = mapping.asSlice(mmapOffset, size);
    }

    /**
     * Validates the description and maps {@code size + mmapOffset} bytes of {@code fd} shared.
     * The fd is not kept: the mapping holds the memory.
     *
     * <p>A regular file (memfd, shm, hugetlbfs) must hold the whole range: mmap succeeds beyond
     * its end, but the first access there raises SIGBUS, which the JVM turns into an
     * InternalError in whichever thread touches the ring or buffer.
     */
    public static MemoryRegion map(long guestAddr, long size, long userAddr, long mmapOffset, int fd) {
        if (size <= 0) {
            throw new IllegalArgumentException("memory region of size " + size);
        }
        if (mmapOffset < 0 || Long.MAX_VALUE - mmapOffset < size) {
            throw new IllegalArgumentException("memory region mmap_offset " + Long.toUnsignedString(mmapOffset) + " overflows");
        }
        if (Long.compareUnsigned(guestAddr + size, guestAddr) < 0 && guestAddr + size != 0) {
            throw new IllegalArgumentException("memory region wraps the guest address space");
        }
        if (Long.compareUnsigned(userAddr + size, userAddr) < 0 && userAddr + size != 0) {
            throw new IllegalArgumentException("memory region wraps the user address space");
        }
        Libc.Stat st = Libc.fstat(fd);
        if (st.isRegularFile() && st.size() < mmapOffset + size) {
            throw new IllegalArgumentException(String.format("memory region [0x%x, +0x%x) at mmap_offset 0x%x lies beyond the end of its %d-byte file",
                    guestAddr, size, mmapOffset, st.size()));
        }
        MemorySegment m = Libc.mmap(size + mmapOffset, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED | Libc.MAP_NORESERVE, fd, 0);
        return new MemoryRegion(guestAddr, size, userAddr, mmapOffset, m, true);
    }

    /** A region over memory we already own (tests, the frontend driver); never unmapped by us. */
    public static MemoryRegion ofSegment(long guestAddr, long userAddr, MemorySegment memory) {
        return new MemoryRegion(guestAddr, memory.byteSize(), userAddr, 0, memory, false);
    }

    public long guestAddr() {
        return guestAddr;
    }

    public long size() {
        return size;
    }

    public long userAddr() {
        return userAddr;
    }

    public long mmapOffset() {
        return mmapOffset;
    }

    public MemorySegment segment() {
        return segment;
    }

    /** True when [gpa, gpa+len) lies in this region (len may be 0). */
    public boolean containsGuest(long gpa, long len) {
        long off = gpa - guestAddr;
        return Long.compareUnsigned(gpa, guestAddr) >= 0 && Long.compareUnsigned(off, size) < 0
                && Long.compareUnsigned(len, size - off) <= 0;
    }

    public boolean containsUser(long uva, long len) {
        long off = uva - userAddr;
        return Long.compareUnsigned(uva, userAddr) >= 0 && Long.compareUnsigned(off, size) < 0
                && Long.compareUnsigned(len, size - off) <= 0;
    }

    public boolean overlapsGuest(MemoryRegion o) {
        if (size == 0 || o.size == 0) {
            return false;
        }
        // Compare last bytes, not ends: a region may end exactly at 2^64, where its end wraps to 0.
        long last = guestAddr + size - 1;
        long oLast = o.guestAddr + o.size - 1;
        return Long.compareUnsigned(guestAddr, oLast) <= 0 && Long.compareUnsigned(o.guestAddr, last) <= 0;
    }

    public boolean sameAs(long gpa, long sz, long uva) {
        return guestAddr == gpa && size == sz && userAddr == uva;
    }

    public void unmap() {
        if (owned) {
            Libc.munmap(mapping);
        }
    }

    @Override
    public String toString() {
        return String.format("region[gpa=0x%x size=0x%x uva=0x%x off=0x%x]", guestAddr, size, userAddr, mmapOffset);
    }
}
