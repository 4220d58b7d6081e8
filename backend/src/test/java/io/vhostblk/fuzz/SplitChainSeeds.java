package io.vhostblk.fuzz;

import io.vhostblk.blk.BlkRequest;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

import static io.vhostblk.virtq.SplitRing.AVAIL_IDX;
import static io.vhostblk.virtq.SplitRing.AVAIL_RING;
import static io.vhostblk.virtq.SplitRing.DESC_SIZE;
import static io.vhostblk.virtq.SplitRing.F_INDIRECT;
import static io.vhostblk.virtq.SplitRing.F_NEXT;
import static io.vhostblk.virtq.SplitRing.F_WRITE;
import static io.vhostblk.virtq.SplitRing.descTableSize;

/**
 * The seed corpus of {@link SplitChainFuzzTest}, written in its input format: valid requests of
 * every type, buffers straddling regions, memory at the top of the address space, and the bad
 * chains of {@code SplitQueueWalkTest}. {@link FuzzSeeds} writes them to the inputs directory;
 * {@link FuzzSeedsTest} checks the checked-in files are current and the valid ones succeed.
 */
final class SplitChainSeeds {
    static final int N = F_NEXT;
    static final int W = F_WRITE;
    static final int I = F_INDIRECT;

    private SplitChainSeeds() {
    }

    /** Writes one input: the setup bytes, then memory patches addressed by guest-physical address. */
    static final class Builder {
        private final FuzzInput.Writer w = new FuzzInput.Writer();
        private final SplitChainFuzzTest.Setup setup;
        private final long[] gpas;
        private int availCount;

        /**
         * @param setupByte the first input byte (regions, layout, features, engine, read-only)
         * @param qlog log2 of the queue size
         */
        Builder(int setupByte, int qlog, int sizeBits, int base) {
            w.u8(setupByte).u8(qlog).u8(sizeBits).u16(base);
            setup = SplitChainFuzzTest.Setup.read(new FuzzInput(w.toByteArray()));
            gpas = FuzzGuest.gpas(setup.layout(), setup.sizes());
        }

        static Builder simple(int qlog) {
            return new Builder(0, qlog, 0, 0);
        }

        long gpa(int region) {
            return gpas[region];
        }

        /** Patches {@code b} at guest address {@code gpa}, across regions if it straddles them. */
        Builder at(long gpa, byte[] b) {
            int done = 0;
            while (done < b.length) {
                long g = gpa + done;
                int r = -1;
                for (int i = 0; i < gpas.length; i++) {
                    if (Long.compareUnsigned(g - gpas[i], setup.sizes()[i]) < 0) {
                        r = i;
                    }
                }
                if (r < 0) {
                    throw new IllegalArgumentException("seed writes outside memory at 0x" + Long.toHexString(g));
                }
                long off = g - gpas[r];
                int n = (int) Math.min(Math.min(256, b.length - done), setup.sizes()[r] - off);
                w.u8(r).u16((int) off).u8(n - 1).bytes(Arrays.copyOfRange(b, done, done + n));
                done += n;
            }
            return this;
        }

        static byte[] desc(long addr, int len, int flags, int next) {
            FuzzInput.Writer d = new FuzzInput.Writer();
            return d.u64(addr).u32(len).u16(flags).u16(next).toByteArray();
        }

        /** Descriptor {@code i} of the ring's table (at the start of region 0). */
        Builder d(int i, long addr, int len, int flags, int next) {
            return at(gpas[0] + (long) DESC_SIZE * i, desc(addr, len, flags, next));
        }

        /** An indirect table at {@code gpa}: descriptors (addr, len, flags, next) in groups of four. */
        Builder table(long gpa, long... d) {
            FuzzInput.Writer t = new FuzzInput.Writer();
            for (int i = 0; i < d.length; i += 4) {
                t.bytes(desc(d[i], (int) d[i + 1], (int) d[i + 2], (int) d[i + 3]));
            }
            return at(gpa, t.toByteArray());
        }

        /** Makes {@code heads} available after what was published so far (avail->idx follows). */
        Builder avail(int... heads) {
            long availGpa = gpas[0] + descTableSize(setup.queueSize());
            int n = setup.queueSize();
            for (int h : heads) {
                int pos = (setup.base() + availCount++) & 0xFFFF;
                at(availGpa + AVAIL_RING + 2L * (pos & (n - 1)), new FuzzInput.Writer().u16(h).toByteArray());
            }
            return availIdx((setup.base() + availCount) & 0xFFFF);
        }

        Builder availIdx(int idx) {
            return at(gpas[0] + descTableSize(setup.queueSize()) + AVAIL_IDX, new FuzzInput.Writer().u16(idx).toByteArray());
        }

        /** A virtio-blk request header at {@code gpa}. */
        Builder header(long gpa, int type, long sector) {
            return at(gpa, new FuzzInput.Writer().u32(type).u32(0).u64(sector).toByteArray());
        }

        /** A discard/write-zeroes segment at {@code gpa}. */
        Builder segment(long gpa, long sector, int num, int flags) {
            return at(gpa, new FuzzInput.Writer().u64(sector).u32(num).u32(flags).toByteArray());
        }

        byte[] build() {
            return w.toByteArray();
        }
    }

    /** Seeds by file name; the "ok-" ones must complete every chain with S_OK. */
    static Map<String, byte[]> all() {
        Map<String, byte[]> m = new LinkedHashMap<>();
        // Queue of 16 at gpa 0 (table 0x000, avail 0x100, used 0x128..0x1AE); buffers from 0x1000.
        m.put("ok-read-one-sector", Builder.simple(4).header(0x1000, BlkRequest.T_IN, 3)
                .d(0, 0x1000, 16, N, 1).d(1, 0x1200, 512, W | N, 2).d(2, 0x1400, 1, W, 0).avail(0).build());
        m.put("ok-write-scattered", Builder.simple(4).header(0x1000, BlkRequest.T_OUT, 8)
                .at(0x1200, filled(1024, 0xA5))
                .d(3, 0x1000, 16, N, 7).d(7, 0x1200, 1000, N, 1).d(1, 0x1200 + 1000, 24, N, 9).d(9, 0x1800, 1, W, 0)
                .avail(3).build());
        m.put("ok-flush-getid-discard-writezeroes", Builder.simple(4)
                .header(0x1000, BlkRequest.T_FLUSH, 0).header(0x1010, BlkRequest.T_GET_ID, 0)
                .header(0x1020, BlkRequest.T_DISCARD, 0).header(0x1030, BlkRequest.T_WRITE_ZEROES, 0)
                .segment(0x1040, 16, 8, 0).segment(0x1050, 32, 8, BlkRequest.DWZ_FLAG_UNMAP)
                .d(0, 0x1000, 16, N, 1).d(1, 0x1800, 1, W, 0)
                .d(2, 0x1010, 16, N, 3).d(3, 0x1900, 20, W | N, 4).d(4, 0x1801, 1, W, 0)
                .d(5, 0x1020, 16, N, 6).d(6, 0x1040, 16, N, 7).d(7, 0x1802, 1, W, 0)
                .d(8, 0x1030, 16, N, 9).d(9, 0x1050, 16, N, 10).d(10, 0x1803, 1, W, 0)
                .avail(0, 2, 5, 8).build());
        m.put("ok-indirect-get-id", new Builder(0x10, 4, 0, 0).header(0x1000, BlkRequest.T_GET_ID, 0)
                .table(0x1C00, 0x1000, 16, N, 1, 0x1900, 20, W | N, 2, 0x1800, 1, W, 0)
                .d(5, 0x1C00, 48, I, 0).avail(5).build());
        m.put("ok-read-straddling-two-regions", new Builder(0x01, 4, 0, 0).header(0x1000, BlkRequest.T_IN, 0)
                .d(0, 0x1000, 16, N, 1).d(1, 0x1800, 4096, W | N, 2).d(2, 0x3000, 1, W, 0).avail(0).build());
        Builder top = new Builder(0x08 | 0x01, 4, 0, 0);   // two regions, the second ending at 2^64
        long end = 0;                                     // 2^64 wraps to 0
        m.put("ok-write-at-the-top-of-the-address-space", top.header(top.gpa(1), BlkRequest.T_OUT, 0)
                .at(end - 1536, filled(1024, 0x3C))
                .d(0, top.gpa(1), 16, N, 1).d(1, end - 1536, 1024, N, 2).d(2, end - 1, 1, W, 0).avail(0).build());
        Builder holes = new Builder(0x04 | 0x02, 4, 0, 0);  // three regions 1 MiB apart
        m.put("ok-buffers-in-three-regions-with-holes", holes.header(holes.gpa(2) + 0x100, BlkRequest.T_IN, 40)
                .d(0, holes.gpa(2) + 0x100, 16, N, 1).d(1, holes.gpa(1) + 0x200, 512, W | N, 2)
                .d(2, holes.gpa(0) + 0x1000, 512, W | N, 3).d(3, holes.gpa(2) + 0x1FFF, 1, W, 0).avail(0).build());
        Builder scat = new Builder(0x0C | 0x02 | 0x10, 4, 0x15, 0);  // scattered, indirect, 16 KiB regions
        m.put("ok-indirect-table-in-a-high-region", scat.header(scat.gpa(1) + 0x10, BlkRequest.T_OUT, 100)
                .table(scat.gpa(2) + 0x3000, scat.gpa(1) + 0x10, 16, N, 1, scat.gpa(0) + 0x2000, 512, N, 2, scat.gpa(2), 1, W, 0)
                .d(0, scat.gpa(2) + 0x3000, 48, I, 0).avail(0).build());
        m.put("ok-event-idx-base-wrapping", new Builder(0x20 | 0x40, 4, 0, 0xFFFF).header(0x1000, BlkRequest.T_FLUSH, 0)
                .d(0, 0x1000, 16, N, 1).d(1, 0x1800, 1, W, 0).d(2, 0x1000, 16, N, 3).d(3, 0x1801, 1, W, 0)
                .avail(0, 2).build());
        Builder full = new Builder(0, 8, 0, 0);             // 256 entries: table 0x0-0xFFF, rings to 0x1A0E
        full.header(0x1C00, BlkRequest.T_FLUSH, 0);
        int[] heads = new int[128];
        for (int k = 0; k < 128; k++) {
            full.d(2 * k, 0x1C00, 16, N, 2 * k + 1).d(2 * k + 1, 0x1D00 + k, 1, W, 0);
            heads[k] = 2 * k;
        }
        m.put("ok-128-flushes-in-a-256-ring", full.avail(heads).build());
        m.put("ioerr-write-to-read-only-device-threads", new Builder(0x80 | 0x40, 4, 0, 0).header(0x1000, BlkRequest.T_OUT, 0)
                .d(0, 0x1000, 16, N, 1).d(1, 0x1200, 512, N, 2).d(2, 0x1400, 1, W, 0).avail(0).build());
        m.put("ioerr-read-past-capacity", Builder.simple(4).header(0x1000, BlkRequest.T_IN, BlkRig.DISK / 512)
                .d(0, 0x1000, 16, N, 1).d(1, 0x1200, 512, W | N, 2).d(2, 0x1400, 1, W, 0).avail(0).build());
        m.put("unsupp-unknown-type", Builder.simple(4).header(0x1000, 99, 0)
                .d(0, 0x1000, 16, N, 1).d(1, 0x1400, 1, W, 0).avail(0).build());

        // Chains the walk must refuse (SplitQueueWalkTest has the full table).
        m.put("bad-loop", Builder.simple(4).d(0, 0x1000, 16, N, 1).d(1, 0x1100, 16, N, 0).avail(0).build());
        m.put("bad-next-out-of-range", Builder.simple(4).d(0, 0x1000, 16, N, 16).avail(0).build());
        m.put("bad-head-out-of-range", Builder.simple(4).avail(0xFFFF).build());
        m.put("bad-readable-after-writable", Builder.simple(4).d(0, 0x1000, 16, W | N, 1).d(1, 0x1100, 16, 0, 0).avail(0).build());
        m.put("bad-buffer-past-the-end-of-memory", Builder.simple(4).d(0, 0x1F00, 0x101, W, 0).avail(0).build());
        m.put("bad-address-wraps", Builder.simple(4).d(0, -0x1000L, 0x2000, W, 0).avail(0).build());
        m.put("bad-indirect-not-negotiated", Builder.simple(4).table(0x1C00, 0x1000, 16, 0, 0).d(0, 0x1C00, 16, I, 0).avail(0).build());
        m.put("bad-nested-indirect", new Builder(0x10, 4, 0, 0).table(0x1C00, 0x1D00, 16, I, 0).table(0x1D00, 0x1000, 1, W, 0)
                .d(0, 0x1C00, 16, I, 0).avail(0).build());
        m.put("bad-indirect-with-next", new Builder(0x10, 4, 0, 0).table(0x1C00, 0x1000, 1, W, 0)
                .d(0, 0x1C00, 16, I | N, 1).d(1, 0x1000, 1, W, 0).avail(0).build());
        m.put("bad-indirect-straddling-regions", new Builder(0x10 | 0x01, 4, 0, 0).table(0x1FF0, 0x1000, 1, W, 0, 0x1000, 1, W, 0)
                .d(0, 0x1FF0, 32, I, 0).avail(0).build());
        long[] many = new long[4 * 300];
        for (int k = 0; k < 300; k++) {
            many[4 * k] = 0x1000 + k;
            many[4 * k + 1] = 1;
            many[4 * k + 2] = k < 299 ? N | W : W;
            many[4 * k + 3] = k + 1;
        }
        m.put("bad-300-buffers-in-an-indirect-table", new Builder(0x10 | 0x01, 4, 0x03, 0).table(0x2000, many)
                .d(0, 0x2000, 300 * 16, I, 0).avail(0).build());
        m.put("bad-avail-index-more-than-a-ring-ahead", Builder.simple(4).availIdx(17).build());
        return m;
    }

    static byte[] filled(int n, int v) {
        byte[] b = new byte[n];
        Arrays.fill(b, (byte) v);
        return b;
    }
}
