package io.vhostblk.memory;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * An immutable snapshot of the guest's memory table: regions sorted by guest-physical address.
 * Workers hold one snapshot while rings run; the control thread builds a new one on
 * SET_MEM_TABLE / ADD_MEM_REG / REM_MEM_REG and swaps it only with the rings quiesced.
 *
 * <p>Translation never trusts the guest: an address or length outside every region yields
 * {@code null} / {@code -1}, never an access.
 */
public final class GuestMemory {
    public static final GuestMemory EMPTY = new GuestMemory(new MemoryRegion[0]);

    private final MemoryRegion[] regions;
    private final long[] starts;

    private GuestMemory(MemoryRegion[] sorted) {
        this.regions = sorted;
        this.starts = new long[sorted.length];
        for (int i = 0; i < sorted.length; i++) {
            starts[i] = sorted[i].guestAddr();
        }
    }

    /** Builds a table; overlapping guest ranges are refused. */
    public static GuestMemory of(List<MemoryRegion> regions) {
        MemoryRegion[] r = regions.toArray(new MemoryRegion[0]);
        // Unsigned order: regionOf() binary-searches with unsigned comparisons.
        Arrays.sort(r, (x, y) -> Long.compareUnsigned(x.guestAddr(), y.guestAddr()));
        for (int i = 1; i < r.length; i++) {
            if (r[i - 1].overlapsGuest(r[i])) {
                throw new IllegalArgumentException("memory regions overlap: " + r[i - 1] + " and " + r[i]);
            }
        }
        return new GuestMemory(r);
    }

    public int regionCount() {
        return regions.length;
    }

    public List<MemoryRegion> regions() {
        return List.of(regions);
    }

    public GuestMemory with(MemoryRegion added) {
        List<MemoryRegion> l = new ArrayList<>(List.of(regions));
        l.add(added);
        return of(l);
    }

    public GuestMemory without(MemoryRegion removed) {
        List<MemoryRegion> l = new ArrayList<>(List.of(regions));
        l.remove(removed);
        return of(l);
    }

    /** The region holding guest address {@code gpa}, or null. Binary search; no allocation. */
    public MemoryRegion regionOf(long gpa) {
        int lo = 0;
        int hi = regions.length - 1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            MemoryRegion r = regions[mid];
            if (Long.compareUnsigned(gpa, starts[mid]) < 0) {
                hi = mid - 1;
            } else if (Long.compareUnsigned(gpa - starts[mid], r.size()) >= 0) {
                lo = mid + 1;
            } else {
                return r;
            }
        }
        return null;
    }

    /**
     * Bytes available contiguously from {@code gpa} inside its region (0 if unmapped): callers
     * split a guest buffer that crosses regions into pieces of this length.
     */
    public long contiguousFrom(long gpa) {
        MemoryRegion r = regionOf(gpa);
        return r == null ? 0 : r.size() - (gpa - r.guestAddr());
    }

    /** Host virtual address of guest address {@code gpa} if [gpa, gpa+len) lies in one region, else -1. */
    public long hostAddress(long gpa, long len) {
        MemoryRegion r = regionOf(gpa);
        if (r == null || !r.containsGuest(gpa, len)) {
            return -1;
        }
        return r.segment().address() + (gpa - r.guestAddr());
    }

    /** A bounds-checked view of [gpa, gpa+len), or null if it is not inside one region. */
    public MemorySegment slice(long gpa, long len) {
        MemoryRegion r = regionOf(gpa);
        if (r == null || !r.containsGuest(gpa, len)) {
            return null;
        }
        return r.segment().asSlice(gpa - r.guestAddr(), len);
    }

    /** A view of the frontend's user-space range [uva, uva+len) (vring addresses), or null. */
    public MemorySegment sliceUser(long uva, long len) {
        for (MemoryRegion r : regions) {
            if (r.containsUser(uva, len)) {
                return r.segment().asSlice(uva - r.userAddr(), len);
            }
        }
        return null;
    }

    /** Unmaps every region; the snapshot must no longer be in use. */
    public void unmapAll() {
        for (MemoryRegion r : regions) {
            r.unmap();
        }
    }
}
