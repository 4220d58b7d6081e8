package io.vhostblk.memory;

import io.vhostblk.linux.Libc;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;

import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** Guest-physical and frontend-user address translation of {@link GuestMemory}. */
class GuestMemoryTest {
    static final long TOP = 0xFFFF_FFFF_FFFF_F000L;   // last page of the 64-bit space
    static final long SIGN = 0x8000_0000_0000_0000L;  // first address with the sign bit set

    final Arena arena = Arena.ofAuto();
    // A = [0, 0x1000), B = [0x100000, 0x102000), C = [2^63, 2^63 + 0x1000), D = [2^64 - 0x1000, 2^64)
    final MemoryRegion a = region(0, 0x1000, 0x7f00_0000_0000L);
    final MemoryRegion b = region(0x100000, 0x2000, 0x7f00_0010_0000L);
    final MemoryRegion c = region(SIGN, 0x1000, 0x7f00_0020_0000L);
    final MemoryRegion d = region(TOP, 0x1000, 0xFFFF_FFFF_FFFF_F000L);

    MemoryRegion region(long gpa, long size, long uva) {
        return MemoryRegion.ofSegment(gpa, uva, arena.allocate(size, 4096));
    }

    GuestMemory all() {
        return GuestMemory.of(List.of(d, a, c, b)); // deliberately unsorted
    }

    @Test
    void regionOfFindsEveryRegionIncludingAboveTheSignBit() {
        GuestMemory m = all();
        assertEquals(4, m.regionCount());
        assertSame(a, m.regionOf(0));
        assertSame(a, m.regionOf(0xFFF));
        assertNull(m.regionOf(0x1000), "one past A");
        assertNull(m.regionOf(0xFFFFF), "one before B");
        assertSame(b, m.regionOf(0x100000));
        assertSame(b, m.regionOf(0x101FFF));
        assertNull(m.regionOf(0x102000));
        assertNull(m.regionOf(SIGN - 1));
        assertSame(c, m.regionOf(SIGN));
        assertSame(c, m.regionOf(SIGN + 0xFFF));
        assertNull(m.regionOf(SIGN + 0x1000));
        assertNull(m.regionOf(TOP - 1));
        assertSame(d, m.regionOf(TOP));
        assertSame(d, m.regionOf(-1L), "2^64 - 1 is D's last byte");
        assertEquals(List.of(a, b, c, d), m.regions(), "regions are kept in unsigned address order");
    }

    @Test
    void hostAddressNeedsTheWholeRangeInOneRegion() {
        GuestMemory m = all();
        long ha = a.segment().address();
        assertEquals(ha, m.hostAddress(0, 0x1000));
        assertEquals(ha + 0xFFF, m.hostAddress(0xFFF, 1), "last byte");
        assertEquals(-1, m.hostAddress(0xFFF, 2), "last byte plus one");
        assertEquals(-1, m.hostAddress(1, 0x1000));
        assertEquals(-1, m.hostAddress(0x1000, 0), "one past the end, even empty");
        assertEquals(-1, m.hostAddress(0x1000, 1));
        assertEquals(b.segment().address() + 0x1FF0, m.hostAddress(0x101FF0, 0x10));
        assertEquals(c.segment().address(), m.hostAddress(SIGN, 0x1000));
        assertEquals(d.segment().address() + 0xFFF, m.hostAddress(-1L, 1));
        assertEquals(-1, m.hostAddress(-1L, 2), "would wrap past 2^64");
        assertEquals(-1, m.hostAddress(TOP, -1L), "length 2^64 - 1");
        assertEquals(-1, m.hostAddress(0, Long.MIN_VALUE));
    }

    @Test
    void sliceIsAViewOfTheRegionBytes() {
        GuestMemory m = all();
        MemorySegment s = m.slice(0x100008, 16);
        assertNotNull(s);
        assertEquals(16, s.byteSize());
        assertEquals(b.segment().address() + 8, s.address());
        s.set(JAVA_LONG, 8, 0x0102030405060708L);
        assertEquals(0x0102030405060708L, b.segment().get(JAVA_LONG, 16));
        assertThrows(IndexOutOfBoundsException.class, () -> s.get(JAVA_LONG, 16), "the view is bounds-checked");
        assertNull(m.slice(0x101FF8, 16), "crosses B's end");
        assertNull(m.slice(0x0FF8, 16), "crosses A's end into the hole");
        assertNull(m.slice(0x50000, 1));
        assertEquals(0x1000, m.slice(TOP, 0x1000).byteSize());
        assertNull(m.slice(TOP + 8, 0x1000));
    }

    @Test
    void sliceUserTranslatesFrontendAddresses() {
        GuestMemory m = all();
        MemorySegment s = m.sliceUser(0x7f00_0010_0000L + 0x100, 0x40);
        assertNotNull(s);
        assertEquals(b.segment().address() + 0x100, s.address());
        assertEquals(0x40, s.byteSize());
        assertEquals(a.segment().address() + 0xFF8, m.sliceUser(0x7f00_0000_0FF8L, 8).address());
        assertNull(m.sliceUser(0x7f00_0000_0FF8L, 9), "past A's end");
        assertNull(m.sliceUser(0x7f00_0000_1000L, 1), "one past A");
        assertNull(m.sliceUser(0x7f00_0000_0000L - 1, 1));
        assertNull(m.sliceUser(0, 1), "guest addresses are not user addresses");
        assertEquals(d.segment().address() + 0xFF0, m.sliceUser(-16L, 16).address(), "user range ending at 2^64");
        assertNull(m.sliceUser(-16L, 17));
    }

    @Test
    void contiguousFromCountsToTheEndOfTheRegion() {
        GuestMemory m = all();
        assertEquals(0x1000, m.contiguousFrom(0));
        assertEquals(1, m.contiguousFrom(0xFFF));
        assertEquals(0, m.contiguousFrom(0x1000));
        assertEquals(0x1FF0, m.contiguousFrom(0x100010));
        assertEquals(0x1000, m.contiguousFrom(SIGN));
        assertEquals(1, m.contiguousFrom(-1L));
        assertEquals(0, m.contiguousFrom(TOP - 1));
    }

    @Test
    void overlappingRegionsAreRefused() {
        assertThrows(IllegalArgumentException.class,
                () -> GuestMemory.of(List.of(region(0, 0x2000, 0), region(0x1000, 0x1000, 0x10000))));
        assertThrows(IllegalArgumentException.class,
                () -> GuestMemory.of(List.of(region(0x1000, 0x1000, 0x10000), region(0, 0x1001, 0))), "one byte of overlap");
        assertThrows(IllegalArgumentException.class,
                () -> GuestMemory.of(List.of(region(0, 0x4000, 0), region(0x1000, 0x1000, 0x10000))), "contained");
        assertThrows(IllegalArgumentException.class,
                () -> GuestMemory.of(List.of(d, region(TOP + 0x800, 0x100, 0x10000))), "inside the region ending at 2^64");
        assertThrows(IllegalArgumentException.class,
                () -> GuestMemory.of(List.of(region(SIGN - 0x1000, 0x2000, 0x10000), c)), "across the sign bit");
        assertThrows(IllegalArgumentException.class,
                () -> GuestMemory.of(List.of(a, b, a)), "the same region twice");
        // Adjacent regions do not overlap.
        GuestMemory ok = GuestMemory.of(List.of(region(0x1000, 0x1000, 0x10000), region(0, 0x1000, 0), region(0x2000, 0x1000, 0x20000)));
        assertEquals(3, ok.regionCount());
        assertEquals(2, GuestMemory.of(List.of(d, region(TOP - 0x1000, 0x1000, 0))).regionCount());
    }

    @Test
    void withAndWithoutBuildNewSnapshots() {
        GuestMemory m = GuestMemory.of(List.of(a, b));
        GuestMemory m2 = m.with(c);
        assertEquals(2, m.regionCount(), "snapshots are immutable");
        assertNull(m.regionOf(SIGN));
        assertEquals(3, m2.regionCount());
        assertSame(c, m2.regionOf(SIGN + 5));
        assertThrows(IllegalArgumentException.class, () -> m2.with(region(0x101000, 0x2000, 0x10000)), "overlaps B");

        GuestMemory m3 = m2.without(b);
        assertEquals(2, m3.regionCount());
        assertNull(m3.regionOf(0x100000));
        assertSame(a, m3.regionOf(0));
        assertSame(c, m3.regionOf(SIGN));
        assertEquals(3, m2.regionCount());
        assertEquals(2, m3.without(b).regionCount(), "removing an absent region changes nothing");
        assertEquals(0, m3.without(a).without(c).regionCount());
    }

    @Test
    void emptyMemoryTranslatesNothing() {
        assertNull(GuestMemory.EMPTY.regionOf(0));
        assertEquals(-1, GuestMemory.EMPTY.hostAddress(0, 1));
        assertNull(GuestMemory.EMPTY.slice(0, 1));
        assertNull(GuestMemory.EMPTY.sliceUser(0, 1));
        assertEquals(0, GuestMemory.EMPTY.contiguousFrom(0));
    }

    @Test
    void regionContainmentAtTheBoundaries() {
        assertEquals(true, b.containsGuest(0x100000, 0x2000));
        assertEquals(true, b.containsGuest(0x101FFF, 1));
        assertEquals(true, b.containsGuest(0x101FFF, 0));
        assertEquals(false, b.containsGuest(0x102000, 0));
        assertEquals(false, b.containsGuest(0xFFFFF, 1));
        assertEquals(false, b.containsGuest(0x100001, 0x2000));
        assertEquals(true, d.containsGuest(-1L, 1));
        assertEquals(false, d.containsGuest(-1L, 2));
        assertEquals(true, b.sameAs(0x100000, 0x2000, 0x7f00_0010_0000L));
        assertEquals(false, b.sameAs(0x100000, 0x1000, 0x7f00_0010_0000L));
    }

    @Test
    void mapValidatesTheDescriptionAndHonoursMmapOffset() {
        int fd = Libc.memfdCreate("guest", Libc.MFD_CLOEXEC);
        try {
            Libc.ftruncate(fd, 0x3000);
            MemorySegment whole = Libc.mmap(0x3000, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, fd, 0);
            whole.set(JAVA_LONG, 0x1008, 0xCAFEF00DL);
            MemoryRegion r = MemoryRegion.map(0x40000, 0x2000, 0x7000_0000L, 0x1000, fd);
            try {
                assertEquals(0x2000, r.segment().byteSize());
                assertEquals(0xCAFEF00DL, r.segment().get(JAVA_LONG, 8), "segment starts at mmap_offset");
                GuestMemory m = GuestMemory.of(List.of(r));
                assertEquals(0xCAFEF00DL, m.slice(0x40008, 8).get(JAVA_LONG, 0));
            } finally {
                r.unmap();
                Libc.munmap(whole);
            }
            assertThrows(IllegalArgumentException.class, () -> MemoryRegion.map(0, 0, 0, 0, fd), "size 0");
            assertThrows(IllegalArgumentException.class, () -> MemoryRegion.map(TOP, 0x2000, 0, 0, fd), "wraps guest space");
            assertThrows(IllegalArgumentException.class, () -> MemoryRegion.map(0, 0x2000, TOP, 0, fd), "wraps user space");
            assertThrows(IllegalArgumentException.class, () -> MemoryRegion.map(0, 0x1000, 0, -1L, fd), "negative offset");
            assertThrows(IllegalArgumentException.class, () -> MemoryRegion.map(0, 0x1000, 0, Long.MAX_VALUE, fd), "offset overflow");
            // Found by VhostUserMessageFuzzTest: mmap succeeds past the end of the file, the first access raises SIGBUS.
            assertThrows(IllegalArgumentException.class, () -> MemoryRegion.map(0, 0x4000, 0, 0, fd), "region larger than its file");
            assertThrows(IllegalArgumentException.class, () -> MemoryRegion.map(0, 0x2000, 0, 0x1001, fd), "mmap_offset pushes it past the end");
            MemoryRegion.map(0, 0x1000, 0, 0x2000, fd).unmap();
        } finally {
            Libc.close(fd);
        }
    }
}
