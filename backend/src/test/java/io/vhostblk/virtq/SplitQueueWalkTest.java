package io.vhostblk.virtq;

import io.vhostblk.virtq.MockSplitQueue.Desc;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import static io.vhostblk.virtq.ChainError.*;
import static io.vhostblk.virtq.SplitRing.F_INDIRECT;
import static io.vhostblk.virtq.SplitRing.F_NEXT;
import static io.vhostblk.virtq.SplitRing.F_WRITE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Table-driven good and bad descriptor chains for {@link SplitQueue#walk}.
 *
 * <p>Guest memory of every case: R0 = [0, 0x10000) and R1 = [0x10000, 0x20000) are contiguous
 * in guest-physical space but separate host mappings; R2 = [0x40000, 0x50000) lies beyond a hole.
 * The queue (16 entries) sits at gpa 0; buffers live at 0x1000 and up.
 */
class SplitQueueWalkTest {
    static final int QSIZE = 16;
    static final int N = F_NEXT;
    static final int W = F_WRITE;
    static final int I = F_INDIRECT;

    record Buf(long gpa, long len, boolean writable) {
    }

    static Buf r(long gpa, long len) {
        return new Buf(gpa, len, false);
    }

    static Buf w(long gpa, long len) {
        return new Buf(gpa, len, true);
    }

    static final class Case {
        final String name;
        final Map<Integer, Desc> descs = new TreeMap<>();
        final Map<Long, Desc[]> tables = new LinkedHashMap<>();
        int head;
        boolean indirect = true;
        int capacity = 16;
        int expected;
        List<Buf> bufs = List.of();

        Case(String name) {
            this.name = name;
        }

        Case d(int i, long addr, int len, int flags, int next) {
            descs.put(i, new Desc(addr, len, flags, next));
            return this;
        }

        Case table(long gpa, Desc... t) {
            tables.put(gpa, t);
            return this;
        }

        Case head(int h) {
            head = h;
            return this;
        }

        Case noIndirect() {
            indirect = false;
            return this;
        }

        Case capacity(int c) {
            capacity = c;
            return this;
        }

        Case ok(int walked, Buf... expect) {
            expected = walked;
            bufs = List.of(expect);
            return this;
        }

        Case fails(int code) {
            expected = code;
            return this;
        }

        @Override
        public String toString() {
            return name;
        }
    }

    static Case c(String name) {
        return new Case(name);
    }

    static Desc D(long addr, int len, int flags, int next) {
        return new Desc(addr, len, flags, next);
    }

    static List<Case> cases() {
        List<Case> l = new ArrayList<>();
        // ---- good chains
        l.add(c("single readable").d(0, 0x1000, 512, 0, 0).ok(1, r(0x1000, 512)));
        l.add(c("single writable").d(0, 0x1000, 1, W, 0).ok(1, w(0x1000, 1)));
        l.add(c("header, data, status: readable then writable")
                .d(0, 0x1000, 16, N, 1).d(1, 0x2000, 4096, N | W, 2).d(2, 0x3000, 1, W, 0)
                .ok(3, r(0x1000, 16), w(0x2000, 4096), w(0x3000, 1)));
        l.add(c("several readable then several writable")
                .d(0, 0x1000, 16, N, 1).d(1, 0x1100, 1000, N, 2).d(2, 0x1800, 24, N, 3).d(3, 0x2000, 7, N | W, 4).d(4, 0x3000, 1, W, 0)
                .ok(5, r(0x1000, 16), r(0x1100, 1000), r(0x1800, 24), w(0x2000, 7), w(0x3000, 1)));
        l.add(c("head in the middle, next indices out of order").head(7)
                .d(7, 0x1000, 16, N, 3).d(3, 0x2000, 512, N | W, 12).d(12, 0x3000, 1, W, 0)
                .ok(3, r(0x1000, 16), w(0x2000, 512), w(0x3000, 1)));
        l.add(c("buffer straddling two regions is split")
                .d(0, 0xFF00, 0x200, W, 0).ok(1, w(0xFF00, 0x100), w(0x10000, 0x100)));
        l.add(c("readable buffer straddling regions inside a chain")
                .d(0, 0xFFF8, 16, N, 1).d(1, 0x3000, 1, W, 0).ok(2, r(0xFFF8, 8), r(0x10000, 8), w(0x3000, 1)));
        l.add(c("buffer ending at the last byte of memory").d(0, 0x1FF00, 0x100, 0, 0).ok(1, r(0x1FF00, 0x100)));
        l.add(c("buffer at the last byte of a region").d(0, 0x4FFFF, 1, W, 0).ok(1, w(0x4FFFF, 1)));
        l.add(c("zero-length descriptors add no buffer and are not translated")
                .d(0, 0x1000, 16, N, 1).d(1, 0xDEAD_0000_0000L, 0, N, 2).d(2, 0x3000, 1, W | N, 3).d(3, 0x7777_0000_0000L, 0, W, 0)
                .ok(4, r(0x1000, 16), w(0x3000, 1)));
        Case full = c("chain exactly as long as the table");
        Buf[] fb = new Buf[QSIZE];
        for (int i = 0; i < QSIZE; i++) {
            full.d(i, 0x1000 + 16L * i, 16, i + 1 < QSIZE ? N : 0, i + 1 < QSIZE ? i + 1 : 0);
            fb[i] = r(0x1000 + 16L * i, 16);
        }
        l.add(full.ok(QSIZE, fb));
        l.add(c("indirect table").d(0, 0x4000, 48, I, 0)
                .table(0x4000, D(0x1000, 16, N, 1), D(0x2000, 512, W | N, 2), D(0x3000, 1, W, 0))
                .ok(4, r(0x1000, 16), w(0x2000, 512), w(0x3000, 1)));
        l.add(c("indirect table at an unaligned guest address").d(0, 0x4003, 48, I, 0)
                .table(0x4003, D(0x1000, 16, N, 2), D(0xBAD, 0, 0, 0), D(0x3000, 1, W, 0))
                .ok(3, r(0x1000, 16), w(0x3000, 1)));
        l.add(c("indirect table with a buffer straddling regions").d(5, 0x4000, 32, I, 0).head(5)
                .table(0x4000, D(0x1000, 16, N, 1), D(0xFFF0, 0x20, W, 0))
                .ok(3, r(0x1000, 16), w(0xFFF0, 0x10), w(0x10000, 0x10)));
        l.add(c("exactly as many buffers as capacity").capacity(3)
                .d(0, 0x1000, 16, N, 1).d(1, 0x2000, 16, N, 2).d(2, 0x3000, 1, W, 0)
                .ok(3, r(0x1000, 16), r(0x2000, 16), w(0x3000, 1)));

        // ---- bad chains
        l.add(c("loop back to the head").d(0, 0x1000, 16, N, 1).d(1, 0x2000, 16, N, 0).fails(TOO_LONG));
        l.add(c("descriptor pointing at itself").d(0, 0x1000, 16, N, 0).fails(TOO_LONG));
        l.add(c("loop not through the head").d(0, 0x1000, 16, N, 1).d(1, 0x1100, 16, N, 2).d(2, 0x1200, 16, N, 1).fails(TOO_LONG));
        l.add(c("loop of zero-length descriptors").d(0, 0, 0, N, 1).d(1, 0, 0, N, 0).fails(TOO_LONG));
        l.add(c("next equal to the queue size").d(0, 0x1000, 16, N, QSIZE).fails(NEXT_OUT_OF_RANGE));
        l.add(c("next 0xffff").d(0, 0x1000, 16, N, 0xFFFF).fails(NEXT_OUT_OF_RANGE));
        l.add(c("head equal to the queue size").head(QSIZE).fails(HEAD_OUT_OF_RANGE));
        l.add(c("head 0xffff").head(0xFFFF).fails(HEAD_OUT_OF_RANGE));
        l.add(c("address beyond guest memory").d(0, 0x100000, 16, 0, 0).fails(BAD_ADDRESS));
        l.add(c("address in the hole between regions").d(0, 0x30000, 16, 0, 0).fails(BAD_ADDRESS));
        l.add(c("buffer running one byte past a region into the hole").d(0, 0x1FF00, 0x101, 0, 0).fails(BAD_ADDRESS));
        l.add(c("addr + len overflows 64 bits").d(0, 0xFFFF_FFFF_FFFF_F000L, 0x2000, 0, 0).fails(BAD_ADDRESS));
        l.add(c("address at 2^64 - 1").d(0, -1L, 1, W, 0).fails(BAD_ADDRESS));
        l.add(c("length 0xffffffff").d(0, 0x1000, -1, W, 0).fails(BAD_ADDRESS));
        l.add(c("bad address in a later writable descriptor").d(0, 0x1000, 16, N, 1).d(1, 0x90000, 1, W, 0).fails(BAD_ADDRESS));
        l.add(c("readable after writable").d(0, 0x1000, 16, W | N, 1).d(1, 0x2000, 16, 0, 0).fails(READABLE_AFTER_WRITABLE));
        l.add(c("indirect without the feature").noIndirect().d(0, 0x4000, 48, I, 0)
                .table(0x4000, D(0x1000, 16, N, 1), D(0x2000, 512, W | N, 2), D(0x3000, 1, W, 0))
                .fails(INDIRECT_NOT_NEGOTIATED));
        l.add(c("nested indirect").d(0, 0x4000, 32, I, 0)
                .table(0x4000, D(0x1000, 16, N, 1), D(0x5000, 16, I, 0)).table(0x5000, D(0x3000, 1, W, 0))
                .fails(NESTED_INDIRECT));
        l.add(c("indirect table length not a multiple of 16").d(0, 0x4000, 40, I, 0).fails(BAD_INDIRECT_TABLE));
        l.add(c("indirect table of length zero").d(0, 0x4000, 0, I, 0).fails(BAD_INDIRECT_TABLE));
        l.add(c("indirect table outside guest memory").d(0, 0x90000, 48, I, 0).fails(BAD_INDIRECT_TABLE));
        l.add(c("indirect table at 2^64 - 16").d(0, -16L, 16, I, 0).fails(BAD_INDIRECT_TABLE));
        l.add(c("indirect table larger than a queue may be").d(0, 0x4000, (SplitRing.MAX_QUEUE_SIZE + 1) * 16, I, 0)
                .fails(BAD_INDIRECT_TABLE));
        l.add(c("indirect table straddling two regions").d(0, 0xFFF0, 32, I, 0).fails(BAD_INDIRECT_TABLE));
        l.add(c("INDIRECT together with NEXT").d(0, 0x4000, 48, I | N, 1).d(1, 0x3000, 1, W, 0)
                .table(0x4000, D(0x1000, 16, 0, 0)).fails(INDIRECT_WITH_NEXT));
        l.add(c("loop inside an indirect table").d(0, 0x4000, 32, I, 0)
                .table(0x4000, D(0x1000, 16, N, 1), D(0x2000, 16, N, 0)).fails(TOO_LONG));
        l.add(c("next beyond the indirect table").d(0, 0x4000, 32, I, 0)
                .table(0x4000, D(0x1000, 16, N, 2), D(0x2000, 16, 0, 0), D(0x3000, 1, W, 0)).fails(NEXT_OUT_OF_RANGE));
        l.add(c("readable after writable inside an indirect table").d(0, 0x4000, 32, I, 0)
                .table(0x4000, D(0x2000, 16, W | N, 1), D(0x1000, 16, 0, 0)).fails(READABLE_AFTER_WRITABLE));
        l.add(c("bad address inside an indirect table").d(0, 0x4000, 32, I, 0)
                .table(0x4000, D(0x1000, 16, N, 1), D(0x30000, 1, W, 0)).fails(BAD_ADDRESS));
        l.add(c("more descriptors than buffer capacity").capacity(4)
                .d(0, 0x1000, 16, N, 1).d(1, 0x1100, 16, N, 2).d(2, 0x1200, 16, N, 3).d(3, 0x1300, 16, N, 4).d(4, 0x3000, 1, W, 0)
                .fails(TOO_MANY_BUFFERS));
        l.add(c("region split pushes a chain over capacity").capacity(2)
                .d(0, 0x1000, 16, N, 1).d(1, 0xFF00, 0x200, W, 0).fails(TOO_MANY_BUFFERS));
        return l;
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void walk(Case k) {
        try (MockGuestMemory mem = MockGuestMemory.anonymous(0, 0x10000, 0x10000, 0x10000, 0x40000, 0x10000)) {
            MockSplitQueue mq = MockSplitQueue.at(mem, QSIZE, 0);
            k.descs.forEach(mq::writeDesc);
            k.tables.forEach(mq::writeTable);
            SplitQueue q = mq.create(false, k.indirect, 0);
            ChainBuffers out = new ChainBuffers(Arena.ofAuto().allocate(ChainBuffers.bytesFor(k.capacity), 8), k.capacity);
            // Leave stale state behind: walk() must start from an empty buffer list.
            out.add(mem.region(0x8000).segment(), 0x8000, 8, true);

            int res = q.walk(k.head, out);

            if (k.expected < 0) {
                assertEquals(describe(k.expected), describe(res));
                return;
            }
            assertEquals(k.expected, res, () -> "walk returned " + describe(res));
            assertEquals(k.bufs.size(), out.count(), "buffer count");
            long readable = 0;
            long writable = 0;
            int firstWritable = k.bufs.size();
            for (int i = 0; i < k.bufs.size(); i++) {
                Buf b = k.bufs.get(i);
                assertEquals(mem.host(b.gpa()), out.address(i), "host address of buffer " + i);
                assertEquals(b.len(), out.length(i), "length of buffer " + i);
                assertEquals(out.address(i), out.segment(i).address() + out.offset(i), "segment+offset of buffer " + i);
                assertTrue(out.offset(i) + out.length(i) <= out.segment(i).byteSize(), "buffer " + i + " inside its region segment");
                if (b.writable()) {
                    writable += b.len();
                    firstWritable = Math.min(firstWritable, i);
                } else {
                    readable += b.len();
                }
            }
            assertEquals(firstWritable, out.firstWritable(), "first writable index");
            assertEquals(writable > 0, out.hasWritable());
            assertEquals(readable, out.readableBytes(), "readable bytes");
            assertEquals(writable, out.writableBytes(), "writable bytes");
        }
    }

    @Test
    void staticWalkOverACraftedTableRespectsItsOwnSize() {
        try (MockGuestMemory mem = MockGuestMemory.anonymous(0, 0x10000)) {
            MockSplitQueue mq = MockSplitQueue.at(mem, QSIZE, 0);
            mq.writeDesc(0, 0x1000, 16, N, 3);
            mq.writeDesc(3, 0x3000, 1, W, 0);
            ChainBuffers out = ChainBuffers.allocate(4);
            // Seen as a table of 3 entries, index 3 is out of range; as 4 entries it is fine.
            assertEquals(NEXT_OUT_OF_RANGE, SplitQueue.walk(mem.slice(0, 48), 3, 0, out, mem.memory(), false));
            assertEquals(2, SplitQueue.walk(mem.slice(0, 64), 4, 0, out, mem.memory(), false));
            assertEquals(2, out.count());
        }
    }

    @Test
    void bufferWrappingAroundTheTopOfTheAddressSpaceIsRefused() {
        // A region ending exactly at 2^64 and one at 0: a buffer starting near the top must not
        // wrap around into the low region.
        try (MockGuestMemory mem = MockGuestMemory.anonymous(0, 0x10000, 0xFFFF_FFFF_FFFF_0000L, 0x10000)) {
            MockSplitQueue mq = MockSplitQueue.at(mem, QSIZE, 0);
            mq.writeDesc(0, 0xFFFF_FFFF_FFFF_F000L, 0x1000, W, 0);
            mq.writeDesc(1, 0xFFFF_FFFF_FFFF_F000L, 0x2000, W, 0);
            SplitQueue q = mq.create(false, false, 0);
            ChainBuffers out = ChainBuffers.allocate(4);
            assertEquals(1, q.walk(0, out), "the top page itself is guest memory");
            assertEquals(mem.host(0xFFFF_FFFF_FFFF_F000L), out.address(0));
            assertEquals(0x1000, out.length(0));
            assertEquals(describe(BAD_ADDRESS), describe(q.walk(1, out)));
            assertFalse(out.count() > 1, "nothing from the low region was added");
        }
    }
}
