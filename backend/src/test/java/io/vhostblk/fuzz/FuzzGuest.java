package io.vhostblk.fuzz;

import io.vhostblk.linux.Libc;
import io.vhostblk.memory.GuestMemory;
import io.vhostblk.memory.MemoryRegion;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;

/**
 * Guest memory whose contents are a fuzzer input: 1..3 regions laid out in guest-physical space
 * in one of a few {@link Layout}s, each region its own host mapping (so guest-contiguous regions
 * are not host-contiguous, as with a real memory table). Memory starts zeroed; the input's
 * content arrives as patches ({@link #patch}: region, offset, bytes), so a short input can place
 * a descriptor, an avail entry or a request header anywhere.
 *
 * <p>The host mappings are allocated once and reused: {@link #build} zeroes what the previous
 * input used, so an execution costs a memset, not mmap calls. Shared by the descriptor-chain targets (split today; packed rings later build their
 * descriptor ring over the same memory).
 */
final class FuzzGuest implements AutoCloseable {
    static final int MAX_REGIONS = 3;
    static final long MIN_REGION = 8 << 10;
    static final long MAX_REGION = 64 << 10;
    /** User address (vring addresses) of region {@code i} is {@code USER_BASE + i * USER_STRIDE}. */
    static final long USER_BASE = 0x7000_0000_0000L;
    static final long USER_STRIDE = 0x10_0000_0000L;

    /** Where the regions lie in guest-physical space. */
    enum Layout {
        /** Back to back from gpa 0: buffers may straddle region boundaries. */
        CONTIGUOUS,
        /** 1 MiB apart from gpa 0: holes between regions. */
        HOLES,
        /** Back to back, the last one ending exactly at 2^64. */
        TOP_OF_ADDRESS_SPACE,
        /** Region 0 at 0, region 1 above 2^47, region 2 ending at 2^64. */
        SCATTERED;

        static Layout of(int bits) {
            return values()[bits & 3];
        }
    }

    private final MemorySegment[] backing = new MemorySegment[MAX_REGIONS];
    private final long[] dirty = new long[MAX_REGIONS];
    private final List<MemoryRegion> regions = new ArrayList<>();
    private GuestMemory memory = GuestMemory.EMPTY;

    FuzzGuest() {
        for (int i = 0; i < MAX_REGIONS; i++) {
            backing[i] = Libc.mmap(MAX_REGION, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS, -1, 0);
        }
    }

    /** Guest-physical start of each region for {@code layout}. */
    static long[] gpas(Layout layout, long[] sizes) {
        int n = sizes.length;
        long[] g = new long[n];
        long total = 0;
        for (long s : sizes) {
            total += s;
        }
        switch (layout) {
            case CONTIGUOUS -> {
                for (int i = 1; i < n; i++) {
                    g[i] = g[i - 1] + sizes[i - 1];
                }
            }
            case HOLES -> {
                for (int i = 0; i < n; i++) {
                    g[i] = (long) i << 20;
                }
            }
            case TOP_OF_ADDRESS_SPACE -> {
                g[0] = -total;
                for (int i = 1; i < n; i++) {
                    g[i] = g[i - 1] + sizes[i - 1];
                }
            }
            case SCATTERED -> {
                if (n > 1) {
                    g[1] = 0x8000_0000_0000L;
                }
                if (n > 2) {
                    g[2] = -sizes[2];
                }
            }
        }
        return g;
    }

    /** Lays out {@code sizes.length} zeroed regions; returns the memory. */
    GuestMemory build(Layout layout, long[] sizes) {
        if (sizes.length < 1 || sizes.length > MAX_REGIONS) {
            throw new IllegalArgumentException(sizes.length + " regions");
        }
        long[] g = gpas(layout, sizes);
        regions.clear();
        for (int i = 0; i < sizes.length; i++) {
            if (sizes[i] < MIN_REGION || sizes[i] > MAX_REGION) {
                throw new IllegalArgumentException("region size " + sizes[i]);
            }
            MemorySegment seg = backing[i].asSlice(0, sizes[i]);
            seg.asSlice(0, Math.min(dirty[i], sizes[i])).fill((byte) 0);
            if (dirty[i] > sizes[i]) {
                backing[i].asSlice(sizes[i], dirty[i] - sizes[i]).fill((byte) 0);
            }
            // The handler may write anywhere in the region (read data, status bytes).
            dirty[i] = sizes[i];
            regions.add(MemoryRegion.ofSegment(g[i], USER_BASE + i * USER_STRIDE, seg));
        }
        for (int i = sizes.length; i < MAX_REGIONS; i++) {
            if (dirty[i] > 0) {
                backing[i].asSlice(0, dirty[i]).fill((byte) 0);
                dirty[i] = 0;
            }
        }
        memory = GuestMemory.of(regions);
        return memory;
    }

    /**
     * Copies {@code bytes} into region {@code region % regionCount()} from byte
     * {@code offset % size}; what would run past the region's end is dropped.
     */
    void patch(int region, int offset, byte[] bytes) {
        MemorySegment seg = regions.get(region % regions.size()).segment();
        long off = Integer.toUnsignedLong(offset) % seg.byteSize();
        int n = (int) Math.min(bytes.length, seg.byteSize() - off);
        MemorySegment.copy(bytes, 0, seg, JAVA_BYTE, off, n);
    }

    /**
     * Applies patches read from {@code in} until it ends, each encoded as
     * {@code u8 region, u16 offset, u8 length-1, bytes}.
     */
    void patchAll(FuzzInput in) {
        while (in.hasMore()) {
            int region = in.u8();
            int offset = in.u16();
            int len = in.u8() + 1;
            patch(region, offset, in.bytes(len));
        }
    }

    GuestMemory memory() {
        return memory;
    }

    /** Region {@code i} in creation order (the order content fills them). */
    MemoryRegion region(int i) {
        return regions.get(i);
    }

    int regionCount() {
        return regions.size();
    }

    @Override
    public void close() {
        for (MemorySegment m : backing) {
            Libc.munmap(m);
        }
    }
}
