package io.vhostblk.fuzz;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.vhostblk.blk.BlkQueue;
import io.vhostblk.memory.GuestMemory;
import io.vhostblk.memory.MemoryRegion;
import io.vhostblk.virtq.ChainBuffers;
import io.vhostblk.virtq.SplitQueue;
import org.junit.jupiter.api.AfterAll;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static io.vhostblk.virtq.SplitRing.USED_ELEM_SIZE;
import static io.vhostblk.virtq.SplitRing.USED_RING;
import static io.vhostblk.virtq.SplitRing.availSize;
import static io.vhostblk.virtq.SplitRing.descTableSize;
import static io.vhostblk.virtq.SplitRing.usedSize;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;

/**
 * Split-ring descriptor chains from arbitrary guest memory, walked by {@link SplitQueue#walk} and
 * executed by the virtio-blk request handler with a real I/O engine on a temp file.
 *
 * <p>Input format ({@link FuzzInput}, little-endian):
 * <pre>
 *   u8  setup    bits 0-1: regions - 1 (3 reads as 1 more: 1 + (b &amp; 3) % 3)
 *                bits 2-3: {@link FuzzGuest.Layout}
 *                bit 4: VIRTIO_RING_F_INDIRECT_DESC, bit 5: VIRTIO_RING_F_EVENT_IDX
 *                bit 6: threads engine (else io_uring), bit 7: read-only device
 *   u8  qlog     queue size = 1 &lt;&lt; (qlog % 9), 1..256
 *   u8  sizes    region i is 8 KiB &lt;&lt; ((sizes &gt;&gt; 2i) &amp; 3), 8..64 KiB
 *   u16 base     the ring's last_avail_idx (SET_VRING_BASE)
 *   then until the end, guest memory patches ({@link FuzzGuest#patchAll}):
 *   u8 region, u16 offset, u8 length - 1, bytes
 * </pre>
 * The rings sit at the start of region 0: descriptor table at 0, avail ring after it, used ring
 * after that (4-aligned). Everything else, avail->idx, the avail entries, descriptors, indirect
 * tables, request headers, is whatever the input says.
 *
 * <p>Invariants per chain the avail ring publishes: no exception escapes (an
 * IndexOutOfBoundsException or IllegalArgumentException from a MemorySegment is reported as an
 * out-of-bounds access); the walk agrees with {@link ReferenceSplitWalk} (refused or not, and
 * the same pieces); every buffer lies inside its region's host mapping, readable ones before
 * writable ones, with consistent byte counts; the request completes within 10 s with exactly one
 * used element naming its head, a used length of 0 for a refused chain and at most the writable
 * bytes otherwise, and a status byte of OK, IOERR or UNSUPP. An avail index more than a ring
 * ahead must mark the queue broken instead.
 */
class SplitChainFuzzTest {
    private static final FuzzGuest GUEST = new FuzzGuest();
    private static final ChainBuffers PROBE = ChainBuffers.allocate(BlkQueue.MAX_BUFFERS);

    /** The decoded setup byte string head. */
    record Setup(int regions, FuzzGuest.Layout layout, boolean indirect, boolean eventIdx, boolean threads,
                 boolean readOnly, int queueSize, long[] sizes, int base) {
        static final int BYTES = 5;

        static Setup read(FuzzInput in) {
            int b0 = in.u8();
            int qlog = in.u8();
            int sz = in.u8();
            int base = in.u16();
            int regions = 1 + (b0 & 3) % 3;
            long[] sizes = new long[regions];
            for (int i = 0; i < regions; i++) {
                sizes[i] = FuzzGuest.MIN_REGION << ((sz >> (2 * i)) & 3);
            }
            return new Setup(regions, FuzzGuest.Layout.of(b0 >> 2), (b0 & 0x10) != 0, (b0 & 0x20) != 0, (b0 & 0x40) != 0,
                    (b0 & 0x80) != 0, 1 << (qlog % 9), sizes, base);
        }

        long descOffset() {
            return 0;
        }

        long availOffset() {
            return descTableSize(queueSize);
        }

        long usedOffset() {
            return (availOffset() + availSize(queueSize) + 3) & ~3L;
        }
    }

    /** What happened to one chain (for the seed tests): the walk result, used length and status (-1: none). */
    record Outcome(int head, int walked, long usedLen, int status) {
    }

    private static final FuzzStats STATS = new FuzzStats("SplitChainFuzzTest.splitChains");

    @AfterAll
    static void report() {
        STATS.report();
    }

    // No @Timeout: Jazzer would pass it to libFuzzer as the per-input limit, but JUnit also applies
    // it to the whole fuzzing run and fails it afterwards. Hangs are bounded in BlkRig instead.
    @FuzzTest(maxDuration = "30s")
    void splitChains(byte[] data) {
        STATS.count();
        try {
            run(data);
        } catch (IndexOutOfBoundsException | IllegalArgumentException e) {
            throw new AssertionError("FINDING: out-of-bounds or invalid guest memory access", e);
        }
    }

    static List<Outcome> run(byte[] data) {
        FuzzInput in = new FuzzInput(data);
        Setup s = Setup.read(in);
        GuestMemory mem = GUEST.build(s.layout(), s.sizes());
        GUEST.patchAll(in);
        MemoryRegion r0 = GUEST.region(0);
        int n = s.queueSize();
        MemorySegment desc = mem.sliceUser(r0.userAddr() + s.descOffset(), descTableSize(n));
        MemorySegment avail = mem.sliceUser(r0.userAddr() + s.availOffset(), availSize(n));
        MemorySegment used = mem.sliceUser(r0.userAddr() + s.usedOffset(), usedSize(n));
        SplitQueue ring = new SplitQueue(n, desc, avail, used, mem, s.eventIdx(), s.indirect(), s.base());
        BlkRig rig = BlkRig.get(s.readOnly(), s.threads());
        BlkQueue q = new BlkQueue(0, ring, -1, -1);
        List<Outcome> outcomes = new ArrayList<>();
        try {
            int published = (ring.availIdx() - s.base()) & 0xFFFF;
            int pending = ring.pending();
            if (published > n) {
                check(ring.isBroken() && pending == 0, "avail index " + published + " entries ahead of a " + n + "-entry ring must break the queue");
                return outcomes;
            }
            check(pending == published, "pending " + pending + " != published " + published);
            ReferenceSplitWalk oracle = new ReferenceSplitWalk(mem, r0.guestAddr() + s.descOffset(), n, s.indirect(), BlkQueue.MAX_BUFFERS);
            long usedStart = used.address();
            long usedEnd = usedStart + used.byteSize();
            for (int k = 0; k < pending; k++) {
                int head = ring.popHead();
                int walked = ring.walk(head, PROBE);
                checkWalk(mem, head, walked, oracle.walk(head));
                boolean hasStatus = walked > 0 && PROBE.hasWritable();
                int last = PROBE.count() - 1;
                MemorySegment statusSeg = hasStatus ? PROBE.segment(last) : null;
                long statusOff = hasStatus ? PROBE.offset(last) + PROBE.length(last) - 1 : 0;
                int usedBefore = ring.usedIdx();
                rig.runToCompletion(q, head);
                q.flushUsed();
                check(ring.usedIdx() == ((usedBefore + 1) & 0xFFFF), "one used element per chain");
                long e = USED_RING + (long) USED_ELEM_SIZE * (usedBefore & (n - 1));
                int id = used.get(JAVA_INT, e);
                long len = Integer.toUnsignedLong(used.get(JAVA_INT, e + 4));
                check(id == head, "used id " + id + " for head " + head);
                if (!hasStatus) {
                    check(len == 0, "refused chain " + head + " has used length " + len);
                    outcomes.add(new Outcome(head, walked, len, -1));
                    continue;
                }
                check(len >= 1 && len <= PROBE.writableBytes(), "used length " + len + " of " + PROBE.writableBytes() + " writable bytes");
                long statusHost = statusSeg.address() + statusOff;
                int status = -1;
                if (statusHost < usedStart || statusHost >= usedEnd) {
                    status = statusSeg.get(JAVA_BYTE, statusOff);
                    check(status >= 0 && status <= 2, "status byte " + status);
                }
                outcomes.add(new Outcome(head, walked, len, status));
            }
            check(q.inflight() == 0, q.inflight() + " requests still in flight");
            return outcomes;
        } finally {
            q.release();
        }
    }

    private static void checkWalk(GuestMemory mem, int head, int walked, ReferenceSplitWalk.Result expect) {
        if (walked < 0) {
            check(walked >= -10, "unknown chain error " + walked);
            check(!expect.ok(), "head " + head + " refused (" + walked + ") but the reference walks it: " + expect.pieces());
            return;
        }
        check(expect.ok(), "head " + head + " walked but the reference refuses it: " + expect.why());
        check(walked == expect.descriptors(), "walked " + walked + " descriptors, reference " + expect.descriptors());
        List<ReferenceSplitWalk.Piece> pieces = expect.pieces();
        check(PROBE.count() == pieces.size(), PROBE.count() + " buffers, reference " + pieces);
        int fw = PROBE.firstWritable();
        long readable = 0;
        long writable = 0;
        for (int i = 0; i < PROBE.count(); i++) {
            MemorySegment seg = PROBE.segment(i);
            long off = PROBE.offset(i);
            long len = PROBE.length(i);
            check(len > 0 && off >= 0 && off + len <= seg.byteSize(), "buffer " + i + " [" + off + ", +" + len + ") outside its region");
            check(PROBE.address(i) == seg.address() + off, "iovec " + i + " does not match its segment");
            MemoryRegion r = null;
            for (MemoryRegion c : mem.regions()) {
                if (c.segment().equals(seg)) {
                    r = c;
                }
            }
            check(r != null, "buffer " + i + " is not in a region of this memory");
            boolean w = i >= fw;
            ReferenceSplitWalk.Piece p = pieces.get(i);
            check(p.gpa() == r.guestAddr() + off && p.len() == len && p.writable() == w,
                    "buffer " + i + " gpa 0x" + Long.toHexString(r.guestAddr() + off) + " +" + len + (w ? " w" : " r") + ", reference " + p);
            if (w) {
                writable += len;
            } else {
                readable += len;
            }
        }
        check(readable == PROBE.readableBytes() && writable == PROBE.writableBytes(), "byte counts");
    }

    private static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError("FINDING: " + what);
        }
    }
}
