package io.vhostblk.server;

import io.vhostblk.blk.BlkConfig;
import io.vhostblk.blk.BlkDevice;
import io.vhostblk.blk.BlkFeature;
import io.vhostblk.blk.BlkRequest;
import io.vhostblk.frontend.BlkClient;
import io.vhostblk.frontend.BlkDeviceConfig;
import io.vhostblk.frontend.BlkDriver;
import io.vhostblk.frontend.GuestMemory;
import io.vhostblk.frontend.VhostUserFrontend;
import io.vhostblk.frontend.Workloads;
import io.vhostblk.image.CacheMode;
import io.vhostblk.linux.Libc;
import io.vhostblk.vhostuser.Message;
import io.vhostblk.vhostuser.ProtocolFeature;
import io.vhostblk.vhostuser.Request;
import io.vhostblk.virtq.VirtioFeature;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The backend's conformance suite: the real vhost-user frontend drives the real backend over a
 * real UNIX socket. Subclasses run it for every I/O engine and cache mode (as Netty runs one
 * test suite against every transport); image formats will join the same way.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
abstract class BackendConformanceTest {
    static final long DISK = 64L << 20;

    @TempDir
    Path dir;
    InProcessBackend backend;

    abstract String engine();

    abstract CacheMode cache();

    /** The image behind the device under test. */
    InProcessBackend.Kind imageKind() {
        return InProcessBackend.Kind.RAW;
    }

    InProcessBackend start(int queues, int workers) throws IOException {
        return start(queues, workers, false, "conformance-1");
    }

    InProcessBackend start(int queues, int workers, boolean readOnly, String serial) throws IOException {
        backend = InProcessBackend.start(dir, DISK, engine(), cache(), queues, workers, readOnly, serial, 0, imageKind());
        return backend;
    }

    @AfterEach
    void stop() throws InterruptedException {
        if (backend != null) {
            assertTrue(backend.alive(), "backend still serving after the test: " + backend.failure());
            backend.close();
        }
    }

    private static byte[] random(long seed, int len) {
        byte[] b = new byte[len];
        new SplittableRandom(seed).nextBytes(b);
        return b;
    }

    /** What the guest sees at [offset, offset+len), read from outside the backend. */
    private byte[] hostFile(long offset, int len) throws IOException {
        return backend.guestView(offset, len);
    }

    private long allocatedBlocks() {
        int fd = Libc.open(backend.image.toString(), Libc.O_RDONLY, 0);
        try {
            return Libc.fstat(fd).blocks();
        } finally {
            Libc.close(fd);
        }
    }

    private static int openFds() throws IOException {
        try (var s = Files.list(Path.of("/proc/self/fd"))) {
            return (int) s.count();
        }
    }

    @Test
    void offersTheFeaturesAndConfigOfTheSpec() throws Exception {
        start(4, 2);
        try (VhostUserFrontend fe = VhostUserFrontend.connect(backend.socketPath(), 5000)) {
            long f = fe.getFeatures();
            for (int bit : new int[] {VirtioFeature.VERSION_1, VirtioFeature.RING_INDIRECT_DESC, VirtioFeature.RING_EVENT_IDX,
                    ProtocolFeature.VHOST_USER_F_PROTOCOL_FEATURES, BlkFeature.SIZE_MAX, BlkFeature.SEG_MAX, BlkFeature.BLK_SIZE,
                    BlkFeature.TOPOLOGY, BlkFeature.FLUSH, BlkFeature.CONFIG_WCE, BlkFeature.MQ, BlkFeature.DISCARD,
                    BlkFeature.WRITE_ZEROES}) {
                assertTrue(VirtioFeature.has(f, bit), "feature bit " + bit);
            }
            assertFalse(VirtioFeature.has(f, BlkFeature.RO));
            assertFalse(VirtioFeature.has(f, VirtioFeature.RING_PACKED), "packed rings are not offered until they work");
            long pf = fe.getProtocolFeatures();
            for (int bit : new int[] {ProtocolFeature.MQ, ProtocolFeature.REPLY_ACK, ProtocolFeature.CONFIG,
                    ProtocolFeature.RESET_DEVICE, ProtocolFeature.CONFIGURE_MEM_SLOTS, ProtocolFeature.STATUS}) {
                assertTrue((pf & ProtocolFeature.bit(bit)) != 0, "protocol bit " + bit);
            }
            assertEquals(0, pf & ProtocolFeature.bit(ProtocolFeature.LOG_SHMFD), "no dirty logging offered yet");
        }
        try (BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults().queues(4))) {
            assertEquals(4, c.negotiation().queueNum());
            BlkDeviceConfig cfg = c.config();
            assertEquals(DISK / 512, cfg.capacity());
            assertEquals(512, cfg.blkSize());
            assertEquals(BlkDevice.SEG_MAX, cfg.segMax());
            assertEquals(BlkDevice.SIZE_MAX, cfg.sizeMax());
            assertEquals(4, cfg.numQueues());
            assertEquals(BlkDevice.MAX_DWZ_SECTORS, cfg.maxDiscardSectors());
            assertEquals(1, cfg.maxDiscardSeg());
            assertEquals(8, cfg.discardSectorAlignment());
            assertEquals(BlkDevice.MAX_DWZ_SECTORS, cfg.maxWriteZeroesSectors());
            assertEquals(1, cfg.maxWriteZeroesSeg());
            assertEquals(1, cfg.writeZeroesMayUnmap());
            assertEquals(cfg, c.frontend().getBlkConfig(), "config is stable");
        }
    }

    @Test
    void readOnlyDeviceRefusesWritesAndOffersRo() throws Exception {
        start(1, 1, true, null);
        try (BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults())) {
            long f = c.negotiation().offeredFeatures();
            assertTrue(VirtioFeature.has(f, BlkFeature.RO));
            assertFalse(VirtioFeature.has(f, BlkFeature.DISCARD));
            assertFalse(VirtioFeature.has(f, BlkFeature.WRITE_ZEROES));
            long buf = c.memory().allocate(4096, 4096);
            assertEquals(BlkRequest.S_IOERR, c.driver(0).write(0, buf, 4096));
            assertEquals(BlkRequest.S_OK, c.driver(0).read(0, buf, 4096));
            assertEquals(BlkRequest.S_OK, c.driver(0).flush());
        }
        assertArrayEquals(new byte[4096], hostFile(0, 4096), "nothing was written");
    }

    @Test
    void scatteredBuffersStraddlingMemoryRegions() throws Exception {
        start(1, 1);
        try (BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults().extra(1 << 20, 2))) {
            GuestMemory mem = c.memory();
            int len = 96 * 1024;
            long a = mem.allocateStraddling(0, len, 12_345);
            long b = mem.allocateStraddling(1, len, 40_960);
            assertTrue(!mem.isContiguous(a, len) && !mem.isContiguous(b, len));
            BlkDriver d = c.driver(0);
            byte[] data = random(1, len);
            mem.write(a, data);
            assertEquals(BlkRequest.S_OK, d.write(100, a, len, 5));
            // Outside readers see writes once the guest flushed (qcow2 caches metadata until then).
            assertEquals(BlkRequest.S_OK, d.flush());
            assertArrayEquals(data, hostFile(100 * 512L, len), "host file holds what was written");
            mem.fill(b, len, (byte) 0x5A);
            int[] segs = {100, 1000, 3000, 4096, 12_345, 20_000};
            int[] all = Arrays.copyOf(segs, segs.length + 1);
            all[segs.length] = len - Arrays.stream(segs).sum();
            assertEquals(BlkRequest.S_OK, d.executeSegments(BlkRequest.T_IN, 100, b, all, true));
            assertArrayEquals(data, mem.read(b, len));
            assertEquals(len + 1, d.usedLen(0) > 0 ? d.usedLen(0) : len + 1);
        }
    }

    @ParameterizedTest(name = "indirect={0} eventIdx={1} poll={2}")
    @CsvSource({"false,false,false", "true,false,false", "false,true,false", "true,true,false", "false,true,true", "true,false,true"})
    void asyncWritesAndReadsInEveryRingMode(boolean indirect, boolean eventIdx, boolean poll) throws Exception {
        start(1, 1);
        int bs = 8192;
        try (BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults().indirect(indirect).eventIdx(eventIdx)
                .poll(poll).slots(24, bs).dataSegments(3).queueSize(indirect ? 32 : 128))) {
            assertEquals(indirect, c.negotiation().has(VirtioFeature.RING_INDIRECT_DESC));
            assertEquals(eventIdx, c.negotiation().has(VirtioFeature.RING_EVENT_IDX));
            BlkDriver d = c.driver(0);
            Workloads.runAll(d, 300, bs, true, 7);
            Workloads.runAll(d, 300, bs, false, 7);
            assertEquals(600, c.frontend().stopQueue(c.queue(0)), "GET_VRING_BASE = requests consumed");
        }
    }

    @Test
    void sixteenBitIndexWrapsAround() throws Exception {
        start(1, 1);
        try (BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults().eventIdx(true).slots(32, 512).queueSize(128))) {
            BlkDriver d = c.driver(0);
            Workloads.runAll(d, 1024, 512, true, 3);
            int total = 0;
            while (total < 70_000) {
                Workloads.runAll(d, 1024, 512, false, 3);
                total += 1024;
            }
            assertEquals((1024 + total) & 0xFFFF, c.frontend().stopQueue(c.queue(0)));
        }
    }

    @Test
    void fourQueuesOnTwoWorkersFromFourThreads() throws Exception {
        start(4, 2);
        int bs = 4096;
        try (BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults().queues(4).eventIdx(true).slots(16, bs))) {
            CompletableFuture<?>[] w = new CompletableFuture<?>[4];
            for (int q = 0; q < 4; q++) {
                int qq = q;
                w[q] = CompletableFuture.runAsync(() -> Workloads.runRange(c.driver(qq), 300 * qq, 300, bs, true, 20 + qq));
            }
            CompletableFuture.allOf(w).get(60, TimeUnit.SECONDS);
            for (int q = 0; q < 4; q++) {
                int qq = q;
                // every queue reads what its neighbour wrote
                w[q] = CompletableFuture.runAsync(() -> Workloads.runRange(c.driver(qq), 300 * ((qq + 1) % 4), 300, bs, false, 20 + (qq + 1) % 4));
            }
            CompletableFuture.allOf(w).get(60, TimeUnit.SECONDS);
        }
    }

    @Test
    void flushGetIdWritebackAndUnsupportedTypes() throws Exception {
        start(1, 1);
        try (BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults().optionalFeatures(1L << BlkFeature.CONFIG_WCE))) {
            BlkDriver d = c.driver(0);
            assertEquals(BlkRequest.S_OK, d.flush());
            assertEquals("conformance-1", d.getId());
            assertEquals(1, c.frontend().getBlkConfig().writeback(), "writeback cache by default");
            c.frontend().setWriteback(false);
            assertEquals(0, c.frontend().getBlkConfig().writeback());
            long buf = c.memory().allocate(4096, 4096);
            c.memory().write(buf, random(9, 4096));
            assertEquals(BlkRequest.S_OK, d.write(16, buf, 4096), "write-through write");
            assertArrayEquals(random(9, 4096), hostFile(16 * 512L, 4096));
            c.frontend().setWriteback(true);
            assertEquals(1, c.frontend().getBlkConfig().writeback());
            assertEquals(BlkRequest.S_UNSUPP, d.execute(99, 0, 0, 0, 0));
            assertEquals(BlkRequest.S_OK, d.flush(), "device keeps working");
        }
    }

    @Test
    void outOfRangeAndUnalignedRequestsFailWithIoerr() throws Exception {
        start(1, 1);
        try (BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults())) {
            BlkDriver d = c.driver(0);
            long buf = c.memory().allocate(8192, 4096);
            long last = DISK / 512 - 8;
            assertEquals(BlkRequest.S_OK, d.write(last, buf, 4096), "last 4 KiB");
            assertEquals(BlkRequest.S_IOERR, d.write(last + 1, buf, 4096), "one sector past the end");
            assertEquals(BlkRequest.S_IOERR, d.read(DISK / 512, buf, 512), "at capacity");
            assertEquals(BlkRequest.S_IOERR, d.read(-1L, buf, 512), "sector 2^64-1");
            assertEquals(BlkRequest.S_IOERR, d.read(0, buf, 1000), "length not a multiple of 512");
            assertEquals(BlkRequest.S_IOERR, d.writeZeroes(last, 16, false), "write-zeroes past the end");
            assertEquals(BlkRequest.S_UNSUPP, d.discard(0, 8, 1), "discard with the UNMAP flag");
            assertEquals(BlkRequest.S_UNSUPP, d.writeZeroes(0, 8, false) == 0 ? d.discard(0, 8, 2) : -1, "reserved discard flag");
            assertEquals(BlkRequest.S_OK, d.read(0, buf, 4096), "still serving");
        }
    }

    @Test
    void writeZeroesAndDiscardReachTheHostFile() throws Exception {
        start(1, 1);
        try (BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults().slots(4, 1 << 20))) {
            BlkDriver d = c.driver(0);
            GuestMemory mem = c.memory();
            long buf = mem.allocate(1 << 20, 4096);
            byte[] ab = new byte[1 << 20];
            Arrays.fill(ab, (byte) 0xAB);
            mem.write(buf, ab);
            long mib = 2048;
            for (int i = 0; i < 4; i++) {
                assertEquals(BlkRequest.S_OK, d.write(mib * (4 + i), buf, 1 << 20));
            }
            assertEquals(BlkRequest.S_OK, d.flush());
            assertEquals(BlkRequest.S_OK, d.writeZeroes(mib * 4 + 8, 16, false));
            assertEquals(BlkRequest.S_OK, d.writeZeroes(mib * 5, 2048, true));
            assertEquals(BlkRequest.S_OK, d.flush());
            byte[] h = hostFile(4L << 20, 2 << 20);
            for (int i = 0; i < h.length; i++) {
                boolean zero = (i >= 8 * 512 && i < 24 * 512) || i >= (1 << 20);
                assertEquals(zero ? 0 : (byte) 0xAB, h[i], "host byte " + i);
            }
            long before = allocatedBlocks();
            assertEquals(BlkRequest.S_OK, d.discard(mib * 6, 4096, 0));
            // qcow2 frees clusters only once the mapping change is durable: at the next FLUSH.
            assertEquals(BlkRequest.S_OK, d.flush());
            assertTrue(allocatedBlocks() <= before - (2 << 20) / 512, "discard punched 2 MiB: " + before + " -> " + allocatedBlocks());
            assertEquals(BlkRequest.S_OK, d.read(mib * 6, buf, 1 << 20));
            assertArrayEquals(new byte[1 << 20], mem.read(buf, 1 << 20));
        }
    }

    @Test
    void memoryTableReplacedWhileRingsRun() throws Exception {
        start(2, 1);
        try (BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults().queues(2).slots(16, 4096))) {
            Workloads.runAll(c.driver(0), 200, 4096, true, 5);
            // QEMU re-sends the table on memory hotplug while the rings run.
            c.frontend().setMemTable(c.memory());
            Workloads.runAll(c.driver(0), 200, 4096, false, 5);
            Workloads.runRange(c.driver(1), 0, 200, 4096, false, 5);
        }
    }

    @Test
    void reconnectCyclesLeakNoFileDescriptors() throws Exception {
        start(2, 2);
        for (int i = 0; i < 3; i++) {
            cycle(i);
        }
        awaitIdle();
        int fds = openFds();
        for (int i = 3; i < 33; i++) {
            cycle(i);
        }
        awaitIdle();
        assertEquals(fds, openFds(), "open fds after 30 more connect/IO/disconnect cycles");
        for (int i = 0; i < 33; i++) {
            assertArrayEquals(random(i, 4096), hostFile(8L * i * 512, 4096), "write of cycle " + i);
        }
    }

    /** Waits until the backend has torn down the last session (teardown follows the frontend's close). */
    private void awaitIdle() throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (backend.server.status().connected()) {
            assertTrue(System.nanoTime() < deadline, "backend still in a session 10 s after the frontend left");
            Thread.sleep(10);
        }
    }

    private void cycle(int i) {
        try (BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults().queues(2))) {
            long buf = c.memory().allocate(4096, 4096);
            c.memory().write(buf, random(i, 4096));
            assertEquals(BlkRequest.S_OK, c.driver(i % 2).write(8L * i, buf, 4096));
        }
    }

    @Test
    void malformedMessagesGetAnErrorOrAClosedConnectionAndTheNextFrontendIsServed() throws Exception {
        start(2, 1);
        try (VhostUserFrontend fe = VhostUserFrontend.connect(backend.socketPath(), 5000)) {
            fe.setProtocolFeatures(fe.getProtocolFeatures() & VhostUserFrontend.DEFAULT_PROTOCOL_FEATURES);
            assertTrue(fe.replyAckNegotiated());
            int nr = Message.FLAG_NEED_REPLY;
            assertEquals(0, fe.call(Request.SET_OWNER, nr, new byte[0]).u64(0), "a good message is acked with 0");
            assertNotEquals(0, fe.call(Request.SET_VRING_NUM, nr, state(0, 100)).u64(0), "ring size not a power of two");
            assertNotEquals(0, fe.call(Request.SET_VRING_NUM, nr, state(7, 128)).u64(0), "vring index out of range");
            assertNotEquals(0, fe.call(Request.SET_VRING_BASE, nr, new byte[4]).u64(0), "short payload");
            assertNotEquals(0, fe.call(Request.SET_MEM_TABLE, nr, new byte[8 + 32]).u64(0), "region without an fd");
            assertNotEquals(0, fe.call(Request.SET_VRING_KICK, nr, u64(0)).u64(0), "kick without fd and without NOFD");
            byte[] addr = new byte[40];
            MemorySegment.ofArray(addr).set(ValueLayout.JAVA_LONG_UNALIGNED, 8, 0x1008); // desc not 16-byte aligned
            assertNotEquals(0, fe.call(Request.SET_VRING_ADDR, nr, addr).u64(0), "misaligned descriptor table");
            MemorySegment.ofArray(addr).set(ValueLayout.JAVA_LONG_UNALIGNED, 8, 0x1000);
            MemorySegment.ofArray(addr).set(ValueLayout.JAVA_INT_UNALIGNED, 4, 1);
            assertNotEquals(0, fe.call(Request.SET_VRING_ADDR, nr, addr).u64(0), "dirty logging was not offered");
            MemorySegment.ofArray(addr).set(ValueLayout.JAVA_INT_UNALIGNED, 4, 0);
            assertEquals(0, fe.call(Request.SET_VRING_ADDR, nr, addr).u64(0), "aligned addresses are accepted");
            assertNotEquals(0, fe.call(Request.SET_VRING_KICK, nr, u64(0x100)).u64(0), "ring started without size or memory");
            assertNotEquals(0, fe.call(Request.SET_FEATURES, nr, u64(1L << 63)).u64(0), "a feature we never offered");
            assertNotEquals(0, fe.call(77, nr, new byte[8]).u64(0), "unknown request with NEED_REPLY");
            assertEquals(0, fe.call(Request.SET_OWNER, nr, new byte[0]).u64(0), "connection still usable");
            fe.send(77, 0, new byte[8]);
            assertTrue(fe.peerClosed(5000), "an unknown request without NEED_REPLY ends the session");
        }
        try (VhostUserFrontend fe = VhostUserFrontend.connect(backend.socketPath(), 5000)) {
            byte[] hdr = new byte[12];
            MemorySegment.ofArray(hdr).set(ValueLayout.JAVA_INT_UNALIGNED, 0, Request.SET_OWNER);
            MemorySegment.ofArray(hdr).set(ValueLayout.JAVA_INT_UNALIGNED, 4, 1);
            MemorySegment.ofArray(hdr).set(ValueLayout.JAVA_INT_UNALIGNED, 8, 1 << 30);
            fe.sendBytes(hdr);
            assertTrue(fe.peerClosed(5000), "a header announcing 1 GiB of payload ends the session");
        }
        try (BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults().queues(2))) {
            assertEquals(BlkRequest.S_OK, c.driver(1).flush(), "the next frontend is served normally");
        }
    }

    private static byte[] state(int index, int num) {
        byte[] b = new byte[8];
        MemorySegment s = MemorySegment.ofArray(b);
        s.set(ValueLayout.JAVA_INT_UNALIGNED, 0, index);
        s.set(ValueLayout.JAVA_INT_UNALIGNED, 4, num);
        return b;
    }

    private static byte[] u64(long v) {
        byte[] b = new byte[8];
        MemorySegment.ofArray(b).set(ValueLayout.JAVA_LONG_UNALIGNED, 0, v);
        return b;
    }

    @Test
    void configSpaceReadsAtAnyOffsetAndRefusesForeignWrites() throws Exception {
        start(1, 1);
        try (BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults().optionalFeatures(1L << BlkFeature.CONFIG_WCE))) {
            byte[] whole = c.frontend().getConfig(0, BlkConfig.SIZE);
            byte[] part = c.frontend().getConfig(BlkConfig.BLK_SIZE, 4);
            assertArrayEquals(Arrays.copyOfRange(whole, BlkConfig.BLK_SIZE, BlkConfig.BLK_SIZE + 4), part);
            assertEquals(DISK / 512, MemorySegment.ofArray(whole).get(ValueLayout.JAVA_LONG_UNALIGNED, 0));
            // capacity is read-only: SET_CONFIG on it is refused and nothing changes
            boolean refused;
            try {
                c.frontend().setConfig(BlkConfig.CAPACITY, new byte[8], 0);
                refused = false;
            } catch (RuntimeException e) {
                refused = true;
            }
            assertTrue(refused, "SET_CONFIG of capacity refused");
            assertEquals(DISK / 512, c.frontend().getBlkConfig().capacity());
        }
    }

    private static byte[] region(GuestMemory.Region r) {
        byte[] b = new byte[Message.SINGLE_REGION_SIZE];
        MemorySegment m = MemorySegment.ofArray(b);
        m.set(ValueLayout.JAVA_LONG_UNALIGNED, 8, r.gpa());
        m.set(ValueLayout.JAVA_LONG_UNALIGNED, 16, r.size());
        m.set(ValueLayout.JAVA_LONG_UNALIGNED, 24, r.userAddr());
        m.set(ValueLayout.JAVA_LONG_UNALIGNED, 32, 0);
        return b;
    }

    @Test
    void memoryRegionsRemovedAndAddedWhileRingsRun() throws Exception {
        start(1, 1);
        try (BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults().extra(1 << 20, 2))) {
            VhostUserFrontend fe = c.frontend();
            assertTrue((fe.ackedProtocolFeatures() & ProtocolFeature.bit(ProtocolFeature.CONFIGURE_MEM_SLOTS)) != 0
                    || (fe.getProtocolFeatures() & ProtocolFeature.bit(ProtocolFeature.CONFIGURE_MEM_SLOTS)) != 0);
            assertEquals(Connection.MAX_MEM_SLOTS, fe.call(Request.GET_MAX_MEM_SLOTS, 0, new byte[0]).u64(0));
            GuestMemory mem = c.memory();
            GuestMemory.Region last = mem.regions().get(2);
            long buf = mem.allocateIn(2, 64 * 1024, 4096);
            byte[] data = random(42, 64 * 1024);
            mem.write(buf, data);
            assertEquals(BlkRequest.S_OK, c.driver(0).write(64, buf, data.length), "buffer in region 2");
            int nr = fe.replyAckNegotiated() ? Message.FLAG_NEED_REPLY : 0;
            Message ack = fe.call(Request.REM_MEM_REG, nr, region(last));
            assertEquals(0, ack.u64(0), "REM_MEM_REG of a known region while the ring runs");
            assertNotEquals(0, fe.call(Request.REM_MEM_REG, nr, region(last)).u64(0), "removing it twice is refused");
            // A request pointing into the removed region must fail, not touch stale memory.
            int status = c.driver(0).read(64, buf, data.length);
            assertTrue(status == BlkRequest.S_IOERR || status == 0xFF, "read into removed memory: status " + status);
            assertEquals(0, fe.call(Request.ADD_MEM_REG, nr, region(last), last.fd()).u64(0), "ADD_MEM_REG puts it back");
            mem.fill(buf, data.length, (byte) 0);
            assertEquals(BlkRequest.S_OK, c.driver(0).read(64, buf, data.length));
            assertArrayEquals(data, mem.read(buf, data.length));
            assertNotEquals(0, fe.call(Request.ADD_MEM_REG, nr, region(last), last.fd()).u64(0), "an overlapping region is refused");
        }
    }

    @Test
    void statusAndResetDevice() throws Exception {
        start(1, 1);
        try (BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults())) {
            VhostUserFrontend fe = c.frontend();
            int nr = Message.FLAG_NEED_REPLY;
            assertEquals(0, fe.call(Request.SET_STATUS, nr, u64(0x0F)).u64(0));
            assertEquals(0x0F, fe.call(Request.GET_STATUS, 0, new byte[0]).u64(0));
            assertNotEquals(0, fe.call(Request.SET_STATUS, nr, u64(0x1FF)).u64(0), "status is one byte");
            assertEquals(BlkRequest.S_OK, c.driver(0).flush());
            assertEquals(0, fe.call(Request.RESET_DEVICE, nr, new byte[0]).u64(0));
            assertEquals(0, fe.call(Request.GET_STATUS, 0, new byte[0]).u64(0), "reset clears the status");
            // After a reset the rings are stopped: starting one again needs the full setup.
            assertNotEquals(0, fe.call(Request.SET_VRING_KICK, nr, u64(0x100)).u64(0), "ring has no size or address after reset");
        }
    }
}
