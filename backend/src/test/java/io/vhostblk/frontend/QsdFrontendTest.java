package io.vhostblk.frontend;

import io.vhostblk.blk.BlkFeature;
import io.vhostblk.blk.BlkRequest;
import io.vhostblk.linux.Libc;
import io.vhostblk.vhostuser.Message;
import io.vhostblk.vhostuser.ProtocolFeature;
import io.vhostblk.vhostuser.Request;
import io.vhostblk.virtq.VirtioFeature;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The frontend against qemu-storage-daemon's vhost-user-blk export (skipped if QSD is missing). */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class QsdFrontendTest {
    static final long DISK = 64L << 20;

    @TempDir
    Path dir;
    Qsd qsd;

    @BeforeAll
    static void needQsd() {
        Qsd.assumeInstalled();
    }

    @AfterEach
    void stop() throws InterruptedException {
        if (qsd != null) {
            qsd.close();
        }
    }

    private Qsd start(int queues) throws Exception {
        return start(queues, "");
    }

    private Qsd start(int queues, String blockdevOptions) throws Exception {
        qsd = Qsd.start(dir, DISK, queues, blockdevOptions);
        return qsd;
    }

    private static byte[] random(long seed, int len) {
        byte[] b = new byte[len];
        new SplittableRandom(seed).nextBytes(b);
        return b;
    }

    private byte[] hostFile(long offset, int len) throws IOException {
        byte[] b = new byte[len];
        try (RandomAccessFile f = new RandomAccessFile(qsd.image.toFile(), "r")) {
            f.seek(offset);
            f.readFully(b);
        }
        return b;
    }

    private void hostWrite(long offset, byte[] b) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(qsd.image.toFile(), "rw")) {
            f.seek(offset);
            f.write(b);
        }
    }

    @Test
    void negotiatesFeaturesAndReadsConfig() throws Exception {
        start(2);
        try (VhostUserFrontend fe = VhostUserFrontend.connect(qsd.socketPath(), 5000)) {
            long f = fe.getFeatures();
            assertTrue(VirtioFeature.has(f, VirtioFeature.VERSION_1), Features.virtio(f));
            assertTrue(VirtioFeature.has(f, ProtocolFeature.VHOST_USER_F_PROTOCOL_FEATURES), Features.virtio(f));
            assertTrue(VirtioFeature.has(f, VirtioFeature.RING_INDIRECT_DESC), Features.virtio(f));
            assertTrue(VirtioFeature.has(f, VirtioFeature.RING_EVENT_IDX), Features.virtio(f));
            assertTrue(VirtioFeature.has(f, BlkFeature.FLUSH), Features.virtio(f));
            long pf = fe.getProtocolFeatures();
            for (int bit : new int[] {ProtocolFeature.CONFIG, ProtocolFeature.MQ, ProtocolFeature.REPLY_ACK}) {
                assertTrue((pf & ProtocolFeature.bit(bit)) != 0, Features.protocol(pf));
            }
        }
        try (BlkClient c = BlkClient.open(qsd.socketPath(), BlkClient.Options.defaults().queues(2))) {
            assertTrue(c.frontend().replyAckNegotiated());
            assertEquals(2, c.negotiation().queueNum());
            assertTrue(c.negotiation().has(BlkFeature.MQ));
            BlkDeviceConfig cfg = c.config();
            assertEquals(DISK / 512, cfg.capacity());
            assertEquals(512, cfg.blkSize());
            assertEquals(2, cfg.numQueues());
            assertTrue(cfg.segMax() > 2, "seg_max " + cfg.segMax());
            assertEquals(cfg, c.frontend().getBlkConfig(), "config is stable");
        }
        assertTrue(qsd.alive(), qsd.logText());
    }

    @Test
    void scatteredBuffersStraddlingMemoryRegions() throws Exception {
        start(1);
        // region 0: queue + 1 MiB slack; regions 1 and 2: 1 MiB each, all contiguous in GPA space
        try (BlkClient c = BlkClient.open(qsd.socketPath(), BlkClient.Options.defaults().extra(1 << 20, 2))) {
            GuestMemory mem = c.memory();
            assertEquals(3, mem.regions().size());
            int len = 96 * 1024;
            long a = mem.allocateStraddling(0, len, 12_345);   // crosses region 0 -> 1 mid-sector
            long b = mem.allocateStraddling(1, len, 40_960);   // crosses region 1 -> 2 on a page boundary
            assertTrue(!mem.isContiguous(a, len) && !mem.isContiguous(b, len));
            BlkDriver d = c.driver(0);

            byte[] data = random(1, len);
            mem.write(a, data);
            assertEquals(BlkRequest.S_OK, d.write(100, a, len, 5));
            assertArrayEquals(data, hostFile(100 * 512L, len), "host file holds what was written");

            mem.fill(b, len, (byte) 0x5A);
            // odd, unaligned segment lengths that add up to the buffer
            int[] segs = {100, 1000, 3000, 4096, 12_345, 20_000};
            int[] all = Arrays.copyOf(segs, segs.length + 1);
            all[segs.length] = len - Arrays.stream(segs).sum();
            assertEquals(BlkRequest.S_OK, d.executeSegments(BlkRequest.T_IN, 100, b, all, true));
            assertArrayEquals(data, mem.read(b, len));

            // host-side change is seen by a read spread over 7 descriptors
            byte[] other = random(2, len);
            hostWrite(100 * 512L, other);
            assertEquals(BlkRequest.S_OK, d.read(100, a, len, 7));
            assertArrayEquals(other, mem.read(a, len));
        }
    }

    @ParameterizedTest(name = "indirect={0} eventIdx={1} poll={2}")
    @CsvSource({"false,false,false", "true,false,false", "false,true,false", "true,true,false", "false,true,true", "true,false,true"})
    void asyncWritesAndReadsInEveryRingMode(boolean indirect, boolean eventIdx, boolean poll) throws Exception {
        start(1);
        int bs = 8192;
        int depth = 24;
        try (BlkClient c = BlkClient.open(qsd.socketPath(), BlkClient.Options.defaults().indirect(indirect).eventIdx(eventIdx)
                .poll(poll).slots(depth, bs).dataSegments(3).queueSize(indirect ? 32 : 128))) {
            assertEquals(indirect, c.negotiation().has(VirtioFeature.RING_INDIRECT_DESC));
            assertEquals(eventIdx, c.negotiation().has(VirtioFeature.RING_EVENT_IDX));
            BlkDriver d = c.driver(0);
            int blocks = 300;
            Workloads.runAll(d, blocks, bs, true, 7);
            Workloads.runAll(d, blocks, bs, false, 7);
            assertEquals(0, c.queue(0).inFlight());
            int n = 2 * blocks;
            assertEquals(n, c.frontend().stopQueue(c.queue(0)), "GET_VRING_BASE is the number of published requests");
        }
    }

    @Test
    void sixteenBitIndexWrapsAroundAgainstTheBackend() throws Exception {
        start(1);
        try (BlkClient c = BlkClient.open(qsd.socketPath(), BlkClient.Options.defaults().eventIdx(true).slots(32, 512).queueSize(128))) {
            BlkDriver d = c.driver(0);
            Workloads.runAll(d, 1024, 512, true, 3);
            int total = 0;
            while (total < 70_000) {
                Workloads.runAll(d, 1024, 512, false, 3);
                total += 1024;
            }
            int published = 1024 + total;
            assertEquals(published & 0xFFFF, c.queue(0).availIdx());
            assertTrue(c.queue(0).kicksSuppressed() > 0, "EVENT_IDX suppressed some kicks");
            assertEquals(published & 0xFFFF, c.frontend().stopQueue(c.queue(0)));
        }
    }

    @Test
    void twoQueuesFromTwoThreads() throws Exception {
        start(2);
        int bs = 4096;
        try (BlkClient c = BlkClient.open(qsd.socketPath(), BlkClient.Options.defaults().queues(2).eventIdx(true).slots(16, bs))) {
            // queue 0 writes blocks [0, 400) with seed 11, queue 1 blocks [400, 800) with seed 12, concurrently
            CompletableFuture<Void> w0 = CompletableFuture.runAsync(() -> Workloads.runAll(c.driver(0), 400, bs, true, 11));
            CompletableFuture<Void> w1 = CompletableFuture.runAsync(() -> Workloads.runRange(c.driver(1), 400, 400, bs, true, 12));
            w0.get(60, TimeUnit.SECONDS);
            w1.get(60, TimeUnit.SECONDS);
            // and each reads what the other wrote
            CompletableFuture<Void> r0 = CompletableFuture.runAsync(() -> Workloads.runRange(c.driver(0), 400, 400, bs, false, 12));
            CompletableFuture<Void> r1 = CompletableFuture.runAsync(() -> Workloads.runAll(c.driver(1), 400, bs, false, 11));
            r0.get(60, TimeUnit.SECONDS);
            r1.get(60, TimeUnit.SECONDS);
            assertTrue(c.queue(0).completions() >= 800 && c.queue(1).completions() >= 800);
        }
    }

    @Test
    void flushGetIdAndWriteback() throws Exception {
        start(1);
        try (BlkClient c = BlkClient.open(qsd.socketPath(), BlkClient.Options.defaults()
                .optionalFeatures(1L << BlkFeature.CONFIG_WCE))) {
            BlkDriver d = c.driver(0);
            assertEquals(BlkRequest.S_OK, d.flush());
            assertEquals("vhost_user_blk", d.getId());
            assertTrue(c.negotiation().has(BlkFeature.CONFIG_WCE));
            int before = c.frontend().getBlkConfig().writeback();
            c.frontend().setWriteback(before == 0);
            assertEquals(before == 0 ? 1 : 0, c.frontend().getBlkConfig().writeback());
            c.frontend().setWriteback(before != 0);
            assertEquals(before, c.frontend().getBlkConfig().writeback());
            assertEquals(BlkRequest.S_OK, d.flush());
            // an unknown request type is refused with UNSUPP, and the device keeps working
            assertEquals(BlkRequest.S_UNSUPP, d.execute(99, 0, 0, 0, 0));
            assertEquals(BlkRequest.S_OK, d.flush());
        }
    }

    @Test
    void writeZeroesAndDiscardReachTheHostFile() throws Exception {
        start(1, "discard=unmap");
        try (BlkClient c = BlkClient.open(qsd.socketPath(), BlkClient.Options.defaults().slots(4, 1 << 20))) {
            assertTrue(c.negotiation().has(BlkFeature.WRITE_ZEROES), Features.virtio(c.negotiation().offeredFeatures()));
            assertTrue(c.negotiation().has(BlkFeature.DISCARD), Features.virtio(c.negotiation().offeredFeatures()));
            BlkDriver d = c.driver(0);
            GuestMemory mem = c.memory();
            long buf = mem.allocate(1 << 20, 4096);
            byte[] ab = new byte[1 << 20];
            Arrays.fill(ab, (byte) 0xAB);
            mem.write(buf, ab);
            long mib = 2048; // sectors per MiB
            for (int i = 0; i < 4; i++) {
                assertEquals(BlkRequest.S_OK, d.write(mib * (4 + i), buf, 1 << 20));
            }
            assertEquals(BlkRequest.S_OK, d.flush());
            assertArrayEquals(ab, hostFile(4L << 20, 1 << 20));

            // WRITE_ZEROES 16 sectors inside the first MiB, without and with UNMAP
            assertEquals(BlkRequest.S_OK, d.writeZeroes(mib * 4 + 8, 16, false));
            assertEquals(BlkRequest.S_OK, d.writeZeroes(mib * 5, 2048, true));
            byte[] h = hostFile(4L << 20, 2 << 20);
            for (int i = 0; i < h.length; i++) {
                boolean zero = (i >= 8 * 512 && i < 24 * 512) || i >= (1 << 20);
                assertEquals(zero ? 0 : (byte) 0xAB, h[i], "host byte " + i);
            }

            long blocksBefore = allocatedBlocks();
            assertEquals(BlkRequest.S_OK, d.discard(mib * 6, 4096, 0));
            assertEquals(BlkRequest.S_OK, d.flush());
            byte[] z = hostFile(6L << 20, 2 << 20);
            for (int i = 0; i < z.length; i++) {
                assertEquals(0, z[i], "discarded byte " + i);
            }
            assertTrue(allocatedBlocks() < blocksBefore, "discard punched a hole: " + blocksBefore + " -> " + allocatedBlocks());
            // the device agrees
            assertEquals(BlkRequest.S_OK, d.read(mib * 6, buf, 1 << 20));
            assertArrayEquals(new byte[1 << 20], mem.read(buf, 1 << 20));
        }
    }

    private long allocatedBlocks() {
        int fd = Libc.open(qsd.image.toString(), Libc.O_RDONLY, 0);
        try {
            return Libc.fstat(fd).blocks();
        } finally {
            Libc.close(fd);
        }
    }

    @Test
    void rawMessagesAndRecoveryAfterABadOne() throws Exception {
        start(1);
        try (VhostUserFrontend fe = VhostUserFrontend.connect(qsd.socketPath(), 5000)) {
            long f = fe.getFeatures();
            Message r = fe.call(Request.GET_FEATURES, 0, new byte[0]);
            assertEquals(f, r.u64(0));
            assertEquals(8, r.size());
            fe.setProtocolFeatures(fe.getProtocolFeatures() & VhostUserFrontend.DEFAULT_PROTOCOL_FEATURES);
            assertTrue(fe.replyAckNegotiated());
            // NEED_REPLY on a message without a reply of its own: a u64 0 acknowledgement
            Message ack = fe.call(Request.SET_OWNER, Message.FLAG_NEED_REPLY, new byte[0]);
            assertEquals(0, ack.u64(0));
            // GET_CONFIG beyond what the device has fails with an empty reply
            Message cfg = fe.call(Request.GET_CONFIG, 0, configRequest(0, 256));
            assertNotEquals(12 + 256, cfg.size(), "oversized GET_CONFIG is refused");
            // an unknown request code: libvhost-user drops the connection
            fe.send(77, 0, new byte[8]);
            assertTrue(fe.peerClosed(5000), "backend hung up after an unknown request");
        }
        // the export takes the next frontend
        try (BlkClient c = BlkClient.open(qsd.socketPath(), BlkClient.Options.defaults())) {
            assertEquals(BlkRequest.S_OK, c.driver(0).flush());
        }
        assertTrue(qsd.alive(), qsd.logText());
    }

    private static byte[] configRequest(int offset, int size) {
        byte[] b = new byte[12 + size];
        MemorySegment s = MemorySegment.ofArray(b);
        s.set(java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED, 0, offset);
        s.set(java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED, 4, size);
        return b;
    }

    @Test
    void cleanCloseLetsTheNextFrontendIn() throws Exception {
        start(1);
        for (int i = 0; i < 3; i++) {
            try (BlkClient c = BlkClient.open(qsd.socketPath(), BlkClient.Options.defaults())) {
                long buf = c.memory().allocate(4096, 4096);
                c.memory().write(buf, random(i, 4096));
                assertEquals(BlkRequest.S_OK, c.driver(0).write(8L * i, buf, 4096));
                assertNotNull(c.driver(0).getId());
            }
        }
        for (int i = 0; i < 3; i++) {
            assertArrayEquals(random(i, 4096), hostFile(8L * i * 512, 4096));
        }
    }
}
