package io.vhostblk.server;

import io.vhostblk.blk.BlkRequest;
import io.vhostblk.frontend.BlkClient;
import io.vhostblk.frontend.GuestMemory;
import io.vhostblk.frontend.VhostUserFrontend;
import io.vhostblk.image.CacheMode;
import io.vhostblk.vhostuser.Message;
import io.vhostblk.vhostuser.ProtocolFeature;
import io.vhostblk.vhostuser.Request;
import io.vhostblk.virtq.SplitRing;
import io.vhostblk.virtq.VirtioFeature;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every kind of malformed vhost-user message of issue 6, over the real socket of one in-process
 * backend: wrong payload sizes, missing and extra fds, overlapping regions, ring addresses outside
 * memory, queue indices out of range, ring sizes that are not powers of two, and memory table
 * changes while rings run. Each must get an error reply (REPLY_ACK nack) or a closed connection;
 * a session that got a nack must still work, and after every case the next frontend must be
 * served normally. {@code BackendConformanceTest.malformedMessages...} has the first handful of
 * cases; this class covers the rest, one fresh session per case.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class MalformedSessionTest {
    static final long DISK = 8L << 20;
    static final int QUEUES = 2;
    /** The prepared session's memory: one 64 KiB region at gpa 0x100000, user address UVA. */
    static final long GPA = 0x100000;
    static final long REGION = 64 << 10;
    static final long UVA = 0x7F00_0000_0000L;
    static final int NR = Message.FLAG_NEED_REPLY;

    @TempDir
    static Path dir;
    static InProcessBackend backend;

    @BeforeAll
    static void start() throws IOException {
        backend = InProcessBackend.start(dir, DISK, "io_uring", CacheMode.WRITEBACK, QUEUES, 1, false, "malformed", 0);
    }

    @AfterAll
    static void stop() throws InterruptedException {
        backend.close();
    }

    @AfterEach
    void nextFrontendIsServed() throws InterruptedException {
        assertTrue(backend.awaitIdle(10_000), "backend still in the malformed session 10 s after it ended");
        assertTrue(backend.alive(), "backend thread died: " + backend.failure());
        assertIoWorks();
    }

    /** A fresh frontend negotiates, starts both rings and writes and reads back 4 KiB on each. */
    static void assertIoWorks() throws InterruptedException {
        try (BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults().queues(QUEUES).slots(2, 4096))) {
            for (int q = 0; q < QUEUES; q++) {
                assertRingWorks(c, q, 7 + q);
            }
        }
        assertTrue(backend.awaitIdle(10_000), "backend still in the good session 10 s after it ended");
    }

    static void assertRingWorks(BlkClient c, int q, int seed) {
        byte[] data = new byte[4096];
        Arrays.fill(data, (byte) seed);
        long buf = c.memory().allocate(4096, 4096);
        c.memory().write(buf, data);
        assertEquals(BlkRequest.S_OK, c.driver(q).write(8L * seed, buf, 4096), "write on ring " + q);
        c.memory().fill(buf, 4096, (byte) 0);
        assertEquals(BlkRequest.S_OK, c.driver(q).read(8L * seed, buf, 4096), "read on ring " + q);
        assertArrayEquals(data, c.memory().read(buf, 4096));
    }

    // ------------------------------------------------------------------ payload helpers

    static byte[] u64(long v) {
        return le(8, v);
    }

    static byte[] le(int n, long v) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (v >>> (8 * i));
        }
        return b;
    }

    static byte[] cat(byte[]... parts) {
        int n = 0;
        for (byte[] p : parts) {
            n += p.length;
        }
        byte[] b = new byte[n];
        int o = 0;
        for (byte[] p : parts) {
            System.arraycopy(p, 0, b, o, p.length);
            o += p.length;
        }
        return b;
    }

    static byte[] state(long index, long num) {
        return cat(le(4, index), le(4, num));
    }

    static byte[] addr(long index, long desc, long used, long avail) {
        return cat(le(4, index), le(4, 0), u64(desc), u64(used), u64(avail), u64(0));
    }

    /** SET_MEM_TABLE payload; regions as (gpa, size, uva, mmap_offset) quadruples. */
    static byte[] memTable(long... r) {
        byte[] b = cat(le(4, r.length / 4), le(4, 0));
        for (long v : r) {
            b = cat(b, u64(v));
        }
        return b;
    }

    static byte[] region(long gpa, long size, long uva, long offset) {
        return cat(u64(0), u64(gpa), u64(size), u64(uva), u64(offset));
    }

    static byte[] config(int offset, int size, int dataLen) {
        return cat(le(4, offset), le(4, size), le(4, 0), new byte[dataLen]);
    }

    // ------------------------------------------------------------------ the cases

    /** How far the session is set up before the bad message. */
    enum Setup {
        /** Nothing sent yet. */
        FRESH,
        /** Features, protocol features with REPLY_ACK, owner. */
        NEGOTIATED,
        /** NEGOTIATED plus a memory table (one region of 64 KiB at GPA) and ring 0 sized 16. */
        MEMORY
    }

    /** An fd to attach: an eventfd, or a memfd of {@code pages} pages. */
    record Fd(boolean event, int pages) {
        static final Fd EVENT = new Fd(true, 0);

        static Fd mem(int pages) {
            return new Fd(false, pages);
        }
    }

    /** One malformed message; {@code announced} is the header's size field (u32), or -1 for the payload's real length. */
    record Bad(String name, Setup setup, int code, long announced, byte[] payload, Fd... fds) {
        static Bad of(String name, Setup setup, int code, byte[] payload, Fd... fds) {
            return new Bad(name, setup, code, -1, payload, fds);
        }

        @Override
        public String toString() {
            return name;
        }
    }

    /** Requests whose reply carries data: they cannot be nacked, a malformed one must end the session. */
    static final java.util.Set<Integer> HAS_REPLY_BODY = java.util.Set.of(Request.GET_FEATURES, Request.GET_PROTOCOL_FEATURES,
            Request.GET_VRING_BASE, Request.GET_QUEUE_NUM, Request.GET_CONFIG, Request.GET_MAX_MEM_SLOTS, Request.GET_STATUS);

    static RawSession open(Setup setup) {
        RawSession s = RawSession.connect(backend.socketPath());
        if (setup == Setup.FRESH) {
            return s;
        }
        VhostUserFrontend fe = s.frontend();
        fe.negotiate(VirtioFeature.bit(VirtioFeature.VERSION_1), 0, VhostUserFrontend.DEFAULT_PROTOCOL_FEATURES
                | ProtocolFeature.bit(ProtocolFeature.CONFIGURE_MEM_SLOTS) | ProtocolFeature.bit(ProtocolFeature.STATUS));
        assertTrue(fe.replyAckNegotiated());
        if (setup == Setup.MEMORY) {
            assertAcked(s.call(Request.SET_MEM_TABLE, NR, memTable(GPA, REGION, UVA, 0), 5000, s.memFd(REGION, new byte[0])));
            assertAcked(s.call(Request.SET_VRING_NUM, NR, state(0, 16), 5000));
        }
        return s;
    }

    static void assertAcked(RawSession.Reply r) {
        assertTrue(r != null && r.isReply() && r.u64() == 0, "expected an ack, got " + r);
    }

    /**
     * Sends {@code b} with NEED_REPLY and asserts a nack or a closed connection; after a nack the
     * session must still answer a good message.
     */
    static void assertRefused(RawSession s, Bad b) {
        int[] fds = new int[b.fds().length];
        for (int i = 0; i < fds.length; i++) {
            fds[i] = b.fds()[i].event() ? s.eventFd() : s.memFd(4096L * b.fds()[i].pages(), new byte[0]);
        }
        int before = s.replies().size();
        long announced = b.announced() < 0 ? b.payload().length : b.announced();
        boolean sent = fds.length > 8
                ? s.sendWithManyFds(RawSession.frame(b.code(), Message.VERSION | NR, (int) announced, b.payload()), fds)
                : s.send(b.code(), Message.VERSION | NR, (int) announced, b.payload(), fds);
        if (sent && announced > b.payload().length) {
            // The backend waits for the rest of the payload; ending the stream is the only way on.
            assertTrue(s.finish(5000), b + ": backend did not close the connection after a truncated message");
            return;
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (sent && s.replies().size() == before && !s.closedByPeer() && System.nanoTime() < deadline) {
            s.poll(100);
        }
        if (s.replies().size() > before) {
            RawSession.Reply r = s.replies().get(before);
            assertTrue(r.isReply(), b + ": " + r);
            assertEquals(b.code(), r.request(), b + ": reply to another request " + r);
            assertTrue(!HAS_REPLY_BODY.contains(b.code()), b + ": answered as if well-formed: " + r);
            assertNotEquals(0, r.u64(), b + ": acked with 0");
            if (announced != b.payload().length) {
                // The rest of what we sent is read as the next header: nack or close, whatever follows.
                return;
            }
            // A refused message leaves the session usable.
            assertAcked(s.call(Request.SET_OWNER, NR, new byte[0], 5000));
            return;
        }
        assertTrue(s.closedByPeer() || s.awaitClosed(1000), b + ": neither an error reply nor a closed connection within 5 s");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource({"wrongSizes", "missingAndExtraFds", "overlappingRegions", "queueIndexOutOfRange", "ringSizesNotPowersOfTwo"})
    void malformedMessageIsRefusedOrEndsTheSession(Bad b) {
        try (RawSession s = open(b.setup())) {
            assertRefused(s, b);
        }
    }

    static List<Bad> wrongSizes() {
        Setup n = Setup.NEGOTIATED;
        Setup m = Setup.MEMORY;
        List<Bad> l = new ArrayList<>();
        for (int len : new int[] {0, 7, 9, 16}) {
            l.add(Bad.of("SET_FEATURES with " + len + " bytes", n, Request.SET_FEATURES, new byte[len]));
        }
        l.add(Bad.of("SET_PROTOCOL_FEATURES with 4 bytes", Setup.FRESH, Request.SET_PROTOCOL_FEATURES, new byte[4]));
        l.add(Bad.of("SET_PROTOCOL_FEATURES with 12 bytes", Setup.FRESH, Request.SET_PROTOCOL_FEATURES, new byte[12]));
        for (int code : new int[] {Request.SET_VRING_NUM, Request.SET_VRING_BASE, Request.SET_VRING_ENABLE, Request.GET_VRING_BASE}) {
            l.add(Bad.of(Request.name(code) + " with 4 bytes", n, code, new byte[4]));
            l.add(Bad.of(Request.name(code) + " with 12 bytes", n, code, new byte[12]));
        }
        l.add(Bad.of("SET_VRING_ADDR with 32 bytes", n, Request.SET_VRING_ADDR, new byte[32]));
        l.add(Bad.of("SET_VRING_ADDR with 48 bytes", n, Request.SET_VRING_ADDR, new byte[48]));
        for (int code : new int[] {Request.SET_VRING_KICK, Request.SET_VRING_CALL, Request.SET_VRING_ERR}) {
            l.add(Bad.of(Request.name(code) + " with 4 bytes", n, code, new byte[4], Fd.EVENT));
            l.add(Bad.of(Request.name(code) + " with 0 bytes", n, code, new byte[0]));
        }
        l.add(Bad.of("SET_STATUS with 1 byte", n, Request.SET_STATUS, new byte[1]));
        l.add(Bad.of("SET_MEM_TABLE with 0 bytes", n, Request.SET_MEM_TABLE, new byte[0]));
        l.add(Bad.of("SET_MEM_TABLE with 4 bytes", n, Request.SET_MEM_TABLE, new byte[4]));
        l.add(Bad.of("SET_MEM_TABLE of 0 regions", n, Request.SET_MEM_TABLE, memTable()));
        l.add(Bad.of("SET_MEM_TABLE of 9 regions", n, Request.SET_MEM_TABLE, cat(le(4, 9), le(4, 0), new byte[9 * 32])));
        l.add(Bad.of("SET_MEM_TABLE one region short of a byte", n, Request.SET_MEM_TABLE,
                Arrays.copyOf(memTable(GPA, REGION, UVA, 0), 39), Fd.mem(16)));
        l.add(Bad.of("SET_MEM_TABLE of 2 regions with one described", n, Request.SET_MEM_TABLE,
                cat(le(4, 2), le(4, 0), Arrays.copyOfRange(memTable(GPA, REGION, UVA, 0), 8, 40)), Fd.mem(16), Fd.mem(16)));
        l.add(Bad.of("ADD_MEM_REG with 32 bytes", n, Request.ADD_MEM_REG, new byte[32], Fd.mem(16)));
        l.add(Bad.of("ADD_MEM_REG with 48 bytes", n, Request.ADD_MEM_REG, Arrays.copyOf(region(GPA, REGION, UVA, 0), 48), Fd.mem(16)));
        l.add(Bad.of("REM_MEM_REG with 39 bytes", m, Request.REM_MEM_REG, Arrays.copyOf(region(GPA, REGION, UVA, 0), 39)));
        l.add(Bad.of("GET_CONFIG with 8 bytes", n, Request.GET_CONFIG, new byte[8]));
        l.add(Bad.of("GET_CONFIG announcing 60 bytes of config but carrying 59", n, Request.GET_CONFIG, config(0, 60, 59)));
        l.add(Bad.of("GET_CONFIG of 0 bytes", n, Request.GET_CONFIG, config(0, 0, 0)));
        l.add(Bad.of("GET_CONFIG past the 256-byte config space", n, Request.GET_CONFIG, config(250, 10, 10)));
        l.add(Bad.of("GET_CONFIG of 2^31 bytes", n, Request.GET_CONFIG, config(0, Integer.MIN_VALUE, 0)));
        l.add(Bad.of("SET_CONFIG announcing 1 byte but carrying none", n, Request.SET_CONFIG, config(0xE0, 1, 0)));
        l.add(Bad.of("SET_CONFIG announcing -1 bytes", n, Request.SET_CONFIG, config(0xE0, -1, 0)));
        for (int code : new int[] {Request.GET_FEATURES, Request.SET_OWNER, Request.GET_PROTOCOL_FEATURES, Request.GET_QUEUE_NUM,
                Request.GET_MAX_MEM_SLOTS, Request.GET_STATUS, Request.RESET_DEVICE}) {
            l.add(Bad.of(Request.name(code) + " with an 8-byte payload", n, code, new byte[8]));
        }
        // Header and payload disagree: the rest of the stream is garbage or never comes.
        l.add(new Bad("header announcing 4097 bytes (one more than any message)", n, Request.SET_OWNER, 4097, new byte[4097]));
        l.add(new Bad("header announcing 2^32 - 1 bytes", n, Request.SET_OWNER, 0xFFFF_FFFFL, new byte[0]));
        l.add(new Bad("header announcing 40 bytes, 8 sent, then the stream ends", n, Request.SET_MEM_TABLE, 40, memTable(), Fd.mem(16)));
        l.add(new Bad("header announcing 8 bytes, 40 sent", n, Request.SET_MEM_TABLE, 8, memTable(GPA, REGION, UVA, 0), Fd.mem(16)));
        return l;
    }

    static List<Bad> missingAndExtraFds() {
        Setup n = Setup.NEGOTIATED;
        Setup m = Setup.MEMORY;
        List<Bad> l = new ArrayList<>();
        l.add(Bad.of("SET_MEM_TABLE of 2 regions with 1 fd", n, Request.SET_MEM_TABLE,
                memTable(GPA, REGION, UVA, 0, GPA + REGION, REGION, UVA + REGION, 0), Fd.mem(16)));
        l.add(Bad.of("SET_MEM_TABLE of 1 region with 2 fds", n, Request.SET_MEM_TABLE, memTable(GPA, REGION, UVA, 0), Fd.mem(16), Fd.mem(16)));
        l.add(Bad.of("SET_MEM_TABLE of 1 region with an eventfd", n, Request.SET_MEM_TABLE, memTable(GPA, REGION, UVA, 0), Fd.EVENT));
        l.add(Bad.of("ADD_MEM_REG without fd", n, Request.ADD_MEM_REG, region(GPA, REGION, UVA, 0)));
        l.add(Bad.of("ADD_MEM_REG with 2 fds", n, Request.ADD_MEM_REG, region(GPA, REGION, UVA, 0), Fd.mem(16), Fd.mem(16)));
        l.add(Bad.of("REM_MEM_REG with 2 fds", m, Request.REM_MEM_REG, region(GPA, REGION, UVA, 0), Fd.mem(16), Fd.mem(16)));
        for (int code : new int[] {Request.SET_VRING_CALL, Request.SET_VRING_ERR}) {
            l.add(Bad.of(Request.name(code) + " without fd and without NOFD", n, code, u64(0)));
        }
        for (int code : new int[] {Request.SET_VRING_KICK, Request.SET_VRING_CALL, Request.SET_VRING_ERR}) {
            l.add(Bad.of(Request.name(code) + " with NOFD and an fd", n, code, u64(0x100), Fd.EVENT));
            l.add(Bad.of(Request.name(code) + " with 2 fds", n, code, u64(0), Fd.EVENT, Fd.EVENT));
        }
        // Messages that carry no fd at all.
        l.add(Bad.of("GET_FEATURES with an fd", n, Request.GET_FEATURES, new byte[0], Fd.EVENT));
        l.add(Bad.of("SET_FEATURES with an fd", n, Request.SET_FEATURES, u64(VirtioFeature.bit(VirtioFeature.VERSION_1)), Fd.EVENT));
        l.add(Bad.of("SET_OWNER with 8 fds", n, Request.SET_OWNER, new byte[0], Fd.EVENT, Fd.EVENT, Fd.EVENT, Fd.EVENT,
                Fd.EVENT, Fd.EVENT, Fd.EVENT, Fd.EVENT));
        l.add(Bad.of("GET_PROTOCOL_FEATURES with an fd", n, Request.GET_PROTOCOL_FEATURES, new byte[0], Fd.EVENT));
        l.add(Bad.of("SET_PROTOCOL_FEATURES with an fd", Setup.FRESH, Request.SET_PROTOCOL_FEATURES,
                u64(ProtocolFeature.bit(ProtocolFeature.REPLY_ACK)), Fd.EVENT));
        l.add(Bad.of("GET_QUEUE_NUM with an fd", n, Request.GET_QUEUE_NUM, new byte[0], Fd.EVENT));
        l.add(Bad.of("SET_VRING_NUM with an fd", n, Request.SET_VRING_NUM, state(0, 16), Fd.EVENT));
        l.add(Bad.of("SET_VRING_BASE with an fd", n, Request.SET_VRING_BASE, state(0, 0), Fd.mem(1)));
        l.add(Bad.of("SET_VRING_ADDR with an fd", n, Request.SET_VRING_ADDR, addr(0, UVA, UVA + 0x1000, UVA + 0x800), Fd.EVENT));
        l.add(Bad.of("SET_VRING_ENABLE with an fd", n, Request.SET_VRING_ENABLE, state(0, 1), Fd.EVENT));
        l.add(Bad.of("GET_VRING_BASE with an fd", n, Request.GET_VRING_BASE, state(0, 0), Fd.EVENT));
        l.add(Bad.of("GET_CONFIG with an fd", n, Request.GET_CONFIG, config(0, 60, 60), Fd.EVENT));
        l.add(Bad.of("SET_CONFIG with an fd", n, Request.SET_CONFIG, config(0xE0, 1, 1), Fd.EVENT));
        l.add(Bad.of("GET_MAX_MEM_SLOTS with an fd", n, Request.GET_MAX_MEM_SLOTS, new byte[0], Fd.EVENT));
        l.add(Bad.of("SET_STATUS with an fd", n, Request.SET_STATUS, u64(1), Fd.EVENT));
        l.add(Bad.of("GET_STATUS with an fd", n, Request.GET_STATUS, new byte[0], Fd.EVENT));
        l.add(Bad.of("RESET_DEVICE with an fd", m, Request.RESET_DEVICE, new byte[0], Fd.EVENT));
        Fd[] many = new Fd[12];
        Arrays.fill(many, Fd.EVENT);
        l.add(Bad.of("SET_MEM_TABLE with 12 fds (more than a message may carry)", n, Request.SET_MEM_TABLE,
                memTable(GPA, REGION, UVA, 0), many));
        return l;
    }

    static List<Bad> overlappingRegions() {
        Setup n = Setup.NEGOTIATED;
        Setup m = Setup.MEMORY;
        long top = -REGION;
        return List.of(
                Bad.of("SET_MEM_TABLE with partly overlapping regions", n, Request.SET_MEM_TABLE,
                        memTable(GPA, REGION, UVA, 0, GPA + REGION / 2, REGION, UVA + REGION, 0), Fd.mem(16), Fd.mem(16)),
                Bad.of("SET_MEM_TABLE with the same region twice", n, Request.SET_MEM_TABLE,
                        memTable(GPA, REGION, UVA, 0, GPA, REGION, UVA, 0), Fd.mem(16), Fd.mem(16)),
                Bad.of("SET_MEM_TABLE with a region inside another", n, Request.SET_MEM_TABLE,
                        memTable(GPA, REGION, UVA, 0, GPA + 4096, 4096, UVA + REGION, 0), Fd.mem(16), Fd.mem(1)),
                Bad.of("SET_MEM_TABLE with one region overlapping the last of three", n, Request.SET_MEM_TABLE,
                        memTable(GPA, 4096, UVA, 0, GPA + 0x10000, 4096, UVA + 0x10000, 0, GPA + 0x20000, 8192, UVA + 0x20000, 0,
                                GPA + 0x21000, 4096, UVA + 0x30000, 0), Fd.mem(1), Fd.mem(1), Fd.mem(2), Fd.mem(1)),
                Bad.of("SET_MEM_TABLE with a region wrapping past 2^64", n, Request.SET_MEM_TABLE,
                        memTable(top + 4096, REGION, UVA, 0), Fd.mem(16)),
                Bad.of("SET_MEM_TABLE with a region of size 0", n, Request.SET_MEM_TABLE, memTable(GPA, 0, UVA, 0), Fd.mem(16)),
                Bad.of("SET_MEM_TABLE with a region larger than its memfd", n, Request.SET_MEM_TABLE,
                        memTable(GPA, REGION, UVA, 0), Fd.mem(4)),
                Bad.of("SET_MEM_TABLE with mmap_offset past the end of its memfd", n, Request.SET_MEM_TABLE,
                        memTable(GPA, REGION, UVA, REGION), Fd.mem(16)),
                Bad.of("ADD_MEM_REG overlapping the start of a region", m, Request.ADD_MEM_REG,
                        region(GPA - 4096, 8192, UVA + REGION, 0), Fd.mem(2)),
                Bad.of("ADD_MEM_REG overlapping the end of a region", m, Request.ADD_MEM_REG,
                        region(GPA + REGION - 4096, 8192, UVA + REGION, 0), Fd.mem(2)),
                Bad.of("ADD_MEM_REG of a region already there", m, Request.ADD_MEM_REG, region(GPA, REGION, UVA, 0), Fd.mem(16)),
                Bad.of("REM_MEM_REG of a region never added", m, Request.REM_MEM_REG, region(GPA + REGION, REGION, UVA + REGION, 0)));
    }

    /** MEMORY setup (ring 0 sized 16, memory [GPA, GPA + 64 KiB) at UVA), then SET_VRING_ADDR and a kick that starts it. */
    static List<Bad> ringsOutsideMemory() {
        long d = SplitRing.descTableSize(16);
        long a = SplitRing.availSize(16);
        long u = SplitRing.usedSize(16);
        long end = UVA + REGION;
        List<Bad> l = new ArrayList<>();
        long[][] bad = {
                {UVA + REGION, UVA + 0x1000, UVA + 0x800},             // descriptor table just past the end
                {end - d + 16, UVA + 0x1000, UVA + 0x800},             // descriptor table straddling the end
                {UVA, UVA + 0x1000, end - a + 2},                     // avail ring straddling the end
                {UVA, (end - u + 4) & ~3L, UVA + 0x800},              // used ring straddling the end
                {UVA - 0x1000, UVA + 0x1000, UVA + 0x800},             // descriptor table before the region
                {GPA, GPA + 0x1000, GPA + 0x800},                      // guest-physical instead of user addresses
                {0, 0x1000, 0x800},                                    // nowhere
                {-16L, UVA + 0x1000, UVA + 0x800},                     // at 2^64 - 16
        };
        for (long[] r : bad) {
            l.add(new Bad(String.format("ring 0 at desc 0x%x used 0x%x avail 0x%x, then kicked", r[0], r[1], r[2]),
                    Setup.MEMORY, -1, -1, addr(0, r[0], r[1], r[2])));
        }
        return l;
    }

    static List<Bad> queueIndexOutOfRange() {
        Setup n = Setup.NEGOTIATED;
        List<Bad> l = new ArrayList<>();
        for (long i : new long[] {QUEUES, 255, 256, 0x7FFF_FFFFL, 0xFFFF_FFFFL}) {
            l.add(Bad.of("SET_VRING_NUM of ring " + i, n, Request.SET_VRING_NUM, state(i, 16)));
            l.add(Bad.of("SET_VRING_BASE of ring " + i, n, Request.SET_VRING_BASE, state(i, 0)));
            l.add(Bad.of("SET_VRING_ADDR of ring " + i, n, Request.SET_VRING_ADDR, addr(i, UVA, UVA + 0x1000, UVA + 0x800)));
            l.add(Bad.of("SET_VRING_ENABLE of ring " + i, n, Request.SET_VRING_ENABLE, state(i, 1)));
            l.add(Bad.of("GET_VRING_BASE of ring " + i, n, Request.GET_VRING_BASE, state(i, 0)));
        }
        for (long v : new long[] {QUEUES, 0xFF, QUEUES | 0x100, 0x200, 1L << 32, -1L}) {
            for (int code : new int[] {Request.SET_VRING_KICK, Request.SET_VRING_CALL, Request.SET_VRING_ERR}) {
                boolean nofd = (v & 0x100) != 0;
                l.add(Bad.of(String.format("%s with index field 0x%x", Request.name(code), v), n, code, u64(v),
                        nofd ? new Fd[0] : new Fd[] {Fd.EVENT}));
            }
        }
        return l;
    }

    static List<Bad> ringSizesNotPowersOfTwo() {
        Setup n = Setup.NEGOTIATED;
        List<Bad> l = new ArrayList<>();
        for (long num : new long[] {0, 3, 100, 1023, 1025, 2048, 32768, 65536, 0x8000_0000L, 0xFFFF_FFFFL}) {
            l.add(Bad.of("SET_VRING_NUM " + num, n, Request.SET_VRING_NUM, state(0, num)));
        }
        for (long base : new long[] {0x10000, 0x8000_0000L, 0xFFFF_FFFFL}) {
            l.add(Bad.of("SET_VRING_BASE 0x" + Long.toHexString(base), n, Request.SET_VRING_BASE, state(0, base)));
        }
        return l;
    }

    /** Rings outside memory are only detected when the ring starts: set the address, then kick. */
    @ParameterizedTest(name = "{0}")
    @MethodSource("ringsOutsideMemory")
    void ringOutsideMemoryIsRefusedWhenItStarts(Bad b) {
        try (RawSession s = open(b.setup())) {
            RawSession.Reply r = s.call(Request.SET_VRING_ADDR, NR, b.payload(), 5000);
            if (r == null) {
                assertTrue(s.closedByPeer() || s.awaitClosed(1000), b + ": no answer to SET_VRING_ADDR");
                return;
            }
            if (r.u64() != 0) {
                return; // refused already (e.g. misaligned)
            }
            assertRefused(s, Bad.of(b.name(), b.setup(), Request.SET_VRING_KICK, u64(0), Fd.EVENT));
        }
    }

    // ------------------------------------------------------------------ while rings run

    /** A BlkClient with both rings running; {@code change} is sent on its connection, then the rings must still work. */
    interface Change {
        void apply(BlkClient c, VhostUserFrontend fe);
    }

    static byte[] regionOf(GuestMemory.Region r, long gpaShift) {
        return region(r.gpa() + gpaShift, r.size(), r.userAddr(), 0);
    }

    /** Sends a message on a running client's connection; asserts a nack or a closed connection. Returns true if still open. */
    static boolean refusedWhileRunning(VhostUserFrontend fe, String what, int code, byte[] payload, int... fds) {
        Message r;
        try {
            r = fe.call(code, NR, payload, fds);
        } catch (RuntimeException e) {
            return false; // closed (the frontend saw end of stream or an error instead of a reply)
        }
        assertNotEquals(0, r.u64(0), what + ": acked");
        return true;
    }

    static int memfd(List<Integer> owned, long size) {
        int fd = io.vhostblk.linux.Libc.memfdCreate("malformed", io.vhostblk.linux.Libc.MFD_CLOEXEC);
        owned.add(fd);
        io.vhostblk.linux.Libc.ftruncate(fd, size);
        return fd;
    }

    static List<Object[]> changesWhileRunning() {
        return List.of(
                new Object[] {"SET_MEM_TABLE without the rings' memory", (Change) (c, fe) -> {
                    List<Integer> owned = new ArrayList<>();
                    try {
                        check(c, refusedWhileRunning(fe, "new table", Request.SET_MEM_TABLE, memTable(0x1_0000_0000L, REGION, UVA, 0),
                                memfd(owned, REGION)));
                    } finally {
                        owned.forEach(io.vhostblk.linux.Libc::closeQuietly);
                    }
                }},
                new Object[] {"SET_MEM_TABLE with overlapping regions", (Change) (c, fe) -> {
                    GuestMemory.Region r0 = c.memory().regions().get(0);
                    check(c, refusedWhileRunning(fe, "overlap", Request.SET_MEM_TABLE,
                            memTable(r0.gpa(), r0.size(), r0.userAddr(), 0, r0.gpa() + 4096, 4096, UVA, 0), r0.fd(), r0.fd()));
                }},
                new Object[] {"SET_MEM_TABLE with a region larger than its memfd", (Change) (c, fe) -> {
                    GuestMemory.Region r0 = c.memory().regions().get(0);
                    check(c, refusedWhileRunning(fe, "too large", Request.SET_MEM_TABLE,
                            memTable(r0.gpa(), r0.size() * 2, r0.userAddr(), 0), r0.fd()));
                }},
                new Object[] {"REM_MEM_REG of the region holding the rings", (Change) (c, fe) -> {
                    check(c, refusedWhileRunning(fe, "remove", Request.REM_MEM_REG, regionOf(c.memory().regions().get(0), 0)));
                }},
                new Object[] {"ADD_MEM_REG overlapping the rings' region", (Change) (c, fe) -> {
                    GuestMemory.Region r0 = c.memory().regions().get(0);
                    check(c, refusedWhileRunning(fe, "add", Request.ADD_MEM_REG, region(r0.gpa() + r0.size() - 4096, 8192, UVA, 0), r0.fd()));
                }},
                new Object[] {"SET_VRING_ADDR moving a running ring", (Change) (c, fe) -> {
                    var q = c.queue(0);
                    check(c, refusedWhileRunning(fe, "move", Request.SET_VRING_ADDR,
                            addr(0, q.descUserAddr() + 4096, q.usedUserAddr(), q.availUserAddr())));
                }},
                new Object[] {"SET_VRING_NUM of a running ring", (Change) (c, fe) -> {
                    check(c, refusedWhileRunning(fe, "num", Request.SET_VRING_NUM, state(0, 64)));
                }},
                new Object[] {"SET_VRING_BASE of a running ring", (Change) (c, fe) -> {
                    check(c, refusedWhileRunning(fe, "base", Request.SET_VRING_BASE, state(1, 5)));
                }},
                new Object[] {"SET_FEATURES switching EVENT_IDX on while rings run", (Change) (c, fe) -> {
                    check(c, refusedWhileRunning(fe, "features", Request.SET_FEATURES,
                            u64(fe.ackedFeatures() | VirtioFeature.bit(VirtioFeature.RING_EVENT_IDX))));
                }});
    }

    /** After a refused change the session goes on: both rings still serve I/O. */
    static void check(BlkClient c, boolean stillOpen) {
        if (stillOpen) {
            for (int q = 0; q < QUEUES; q++) {
                assertRingWorks(c, q, 20 + q);
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("changesWhileRunning")
    void memoryAndRingChangesWhileRingsRun(String name, Change change) {
        try (BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults().queues(QUEUES).slots(2, 4096))) {
            for (int q = 0; q < QUEUES; q++) {
                assertRingWorks(c, q, 10 + q);
            }
            change.apply(c, c.frontend());
        }
    }

    // ------------------------------------------------------------------ streams that end badly

    @Test
    void streamsEndingInsideAMessage() throws InterruptedException {
        byte[][] cuts = {
                Arrays.copyOf(RawSession.frame(Request.GET_FEATURES, 1, 0, new byte[0]), 5),
                RawSession.frame(Request.SET_FEATURES, 1, 8, new byte[3]),
                RawSession.frame(Request.SET_MEM_TABLE, 1, 40, new byte[12]),
        };
        for (byte[] cut : cuts) {
            try (RawSession s = RawSession.connect(backend.socketPath())) {
                s.frontend().sendBytes(cut, s.memFd(4096, new byte[0]));
                assertTrue(s.finish(5000), "backend did not close after a stream cut inside a message");
            }
            assertTrue(backend.awaitIdle(10_000));
            assertIoWorks();
        }
    }

    @Test
    void peerVanishesWithRingsRunningAndRequestsInFlight() throws InterruptedException {
        BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults().queues(QUEUES).slots(8, 4096));
        try {
            assertRingWorks(c, 0, 30);
            for (int i = 0; i < 8; i++) {
                int slot = c.driver(1).acquire();
                c.driver(1).submit(slot, BlkRequest.T_IN, 8L * i, 4096);
            }
            c.driver(1).publish();
            // No GET_VRING_BASE: the connection just ends (QEMU killed).
            c.frontend().socket().shutdown();
            assertTrue(backend.awaitIdle(10_000), "backend still in the session after the frontend vanished");
        } finally {
            try {
                c.close();
            } catch (RuntimeException ignored) {
                // the connection was shut down under the frontend
            }
        }
    }
}
