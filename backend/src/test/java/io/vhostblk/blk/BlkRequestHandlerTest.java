package io.vhostblk.blk;

import io.vhostblk.image.CacheMode;
import io.vhostblk.image.RawImage;
import io.vhostblk.io.IoEngine;
import io.vhostblk.io.IoUringEngine;
import io.vhostblk.io.ThreadsEngine;
import io.vhostblk.linux.Libc;
import io.vhostblk.virtq.MockGuestMemory;
import io.vhostblk.virtq.MockSplitQueue;
import io.vhostblk.virtq.MockSplitQueue.Desc;
import io.vhostblk.virtq.SplitQueue;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

import static io.vhostblk.blk.BlkRequest.*;
import static io.vhostblk.virtq.MockSplitQueue.Desc.r;
import static io.vhostblk.virtq.MockSplitQueue.Desc.w;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * virtio-blk requests end to end without QEMU: a driver-side {@link MockSplitQueue} in memfd
 * guest memory, {@link BlkRequestHandler} over a {@link RawImage} of a temp file, completed by a
 * real {@link IoEngine}. Runs once per engine, so it doubles as an engine conformance suite.
 */
@ParameterizedClass(name = "{0}")
@EnumSource(BlkRequestHandlerTest.Engine.class)
class BlkRequestHandlerTest {
    enum Engine {
        IO_URING {
            IoEngine create() {
                return new IoUringEngine(64);
            }
        },
        THREADS {
            IoEngine create() {
                return new ThreadsEngine(64, 2, "test");
            }
        };

        abstract IoEngine create();
    }

    static final int DISK = 1 << 20;            // 2048 sectors
    static final long SECTORS = DISK / 512;
    static final String SERIAL = "vhostblk-test";
    /** Guest memory: two 256 KiB regions, contiguous in gpa, separate mappings. */
    static final long BOUNDARY = 0x40000;

    @Parameter
    Engine kind;

    @TempDir
    Path dir;

    Path file;
    RawImage image;
    BlkDevice device;
    MockGuestMemory mem;
    MockSplitQueue mq;
    SplitQueue ring;
    BlkQueue queue;
    IoEngine engine;
    BlkRequestHandler handler;

    /** Builds the rig; the image file starts fully allocated and filled with 0x5A. */
    void rig(boolean readOnly) throws Exception {
        file = dir.resolve("disk.img");
        byte[] fillByte = new byte[DISK];
        Arrays.fill(fillByte, (byte) 0x5A);
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
            raf.write(fillByte);
            raf.getFD().sync();
        }
        image = RawImage.open(file.toString(), readOnly, CacheMode.WRITEBACK);
        device = new BlkDevice(image, 1, SERIAL);
        mem = MockGuestMemory.memfd(0, BOUNDARY, BOUNDARY, BOUNDARY);
        mq = MockSplitQueue.at(mem, 16, 0);
        mem.allocateFrom(0x1000);
        ring = mq.create(true, true, 0);
        queue = new BlkQueue(0, ring, -1, -1);
        engine = kind.create();
        handler = new BlkRequestHandler(device, engine, new BlkQueue[] {queue});
    }

    void rig() throws Exception {
        rig(false);
    }

    @AfterEach
    void tearDown() {
        if (engine != null) {
            engine.close();
        }
        if (queue != null) {
            queue.release();
        }
        if (image != null) {
            image.close();
        }
        if (mem != null) {
            mem.close();
        }
    }

    // ------------------------------------------------------------------ driver-side helpers

    record Used(int id, int len) {
    }

    long header(int type, long sector) {
        long g = mem.allocate(HEADER_SIZE);
        mem.putInt(g, type);
        mem.putInt(g + 4, 0);
        mem.putLong(g + 8, sector);
        return g;
    }

    long status() {
        long g = mem.allocate(1, 1);
        mem.putByte(g, 0xEE);
        return g;
    }

    long buffer(int len) {
        long g = mem.allocate(len, 512);
        mem.fill(g, len, (byte) 0xEE);
        return g;
    }

    long segment(long sector, int num, int flags) {
        long g = mem.allocate(DWZ_SEGMENT_SIZE);
        mem.putLong(g, sector);
        mem.putInt(g + 8, num);
        mem.putInt(g + 12, flags);
        return g;
    }

    static byte[] pattern(int n, int seed) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (i * 31 + seed + (i >> 9));
        }
        return b;
    }

    /** Publishes {@code chains}, lets the handler start them all, then completes them. */
    Map<Integer, Used> runBatch(Desc[]... chains) {
        int[] heads = new int[chains.length];
        for (int i = 0; i < chains.length; i++) {
            heads[i] = mq.addChain(chains[i]);
            mq.publish(heads[i]);
        }
        int before = mq.usedIdx();
        while (ring.pending() > 0) {
            handler.start(queue, ring.popHead());
        }
        engine.submit();
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (queue.inflight() > 0) {
            if (engine.reap(handler) == 0) {
                Thread.onSpinWait();
            }
            engine.submit();
            if (System.nanoTime() > deadline) {
                fail(queue.inflight() + " requests did not complete");
            }
        }
        queue.flushUsed();
        int after = mq.usedIdx();
        assertEquals(chains.length, (after - before) & 0xFFFF, "one used element per request");
        Map<Integer, Used> byHead = new HashMap<>();
        for (int p = before; p != after; p = (p + 1) & 0xFFFF) {
            byHead.put(mq.usedId(p), new Used(mq.usedId(p), mq.usedLen(p)));
        }
        for (int h : heads) {
            assertTrue(byHead.containsKey(h), "head " + h + " was returned");
        }
        return byHead;
    }

    /** Runs one request; returns its used length. */
    int run(Desc... chain) {
        Map<Integer, Used> u = runBatch(chain);
        return u.values().iterator().next().len();
    }

    byte[] fileBytes(long off, int len) throws Exception {
        return Arrays.copyOfRange(Files.readAllBytes(file), (int) off, (int) off + len);
    }

    static byte[] filled(int len, int v) {
        byte[] b = new byte[len];
        Arrays.fill(b, (byte) v);
        return b;
    }

    // ------------------------------------------------------------------ requests

    @Test
    void writeScatteredOverThreeBuffersThenReadBack() throws Exception {
        rig();
        byte[] data = pattern(4096, 1);
        long d1 = 0x2000;
        long d2 = BOUNDARY - 1036;   // 2072 bytes straddling the two regions
        long d3 = BOUNDARY + 0x10000;
        mem.write(d1, Arrays.copyOfRange(data, 0, 1000));
        mem.write(d2, Arrays.copyOfRange(data, 1000, 3072));
        mem.write(d3, Arrays.copyOfRange(data, 3072, 4096));
        long st = status();
        assertEquals(1, run(r(header(T_OUT, 8), HEADER_SIZE), r(d1, 1000), r(d2, 2072), r(d3, 1024), w(st, 1)),
                "OUT returns used len 1 (the status byte)");
        assertEquals(S_OK, mem.getByte(st));
        assertArrayEquals(data, fileBytes(4096, 4096), "file holds the pattern at sector 8");
        assertArrayEquals(filled(512, 0x5A), fileBytes(3584, 512), "sector before untouched");
        assertArrayEquals(filled(512, 0x5A), fileBytes(8192, 512), "sector after untouched");

        long e1 = 0x8000;
        long e2 = BOUNDARY - 1500;   // 3000 bytes straddling again, other split point
        long e3 = BOUNDARY + 0x20000;
        mem.fill(e1, 512, (byte) 0);
        mem.fill(e2, 3000, (byte) 0);
        mem.fill(e3, 584, (byte) 0);
        long st2 = status();
        assertEquals(4096 + 1, run(r(header(T_IN, 8), HEADER_SIZE), w(e1, 512), w(e2, 3000), w(e3, 584), w(st2, 1)),
                "IN returns data + status");
        assertEquals(S_OK, mem.getByte(st2));
        byte[] back = new byte[4096];
        System.arraycopy(mem.read(e1, 512), 0, back, 0, 512);
        System.arraycopy(mem.read(e2, 3000), 0, back, 512, 3000);
        System.arraycopy(mem.read(e3, 584), 0, back, 3512, 584);
        assertArrayEquals(data, back);
    }

    @Test
    void headerSplitAcrossTwoDescriptorsAndStatusSharingTheDataBuffer() throws Exception {
        rig();
        long h = header(T_OUT, 100);
        byte[] data = pattern(512, 7);
        long d = buffer(512);
        mem.write(d, data);
        long st = status();
        assertEquals(1, run(r(h, 8), r(h + 8, 8), r(d, 512), w(st, 1)));
        assertEquals(S_OK, mem.getByte(st));
        assertArrayEquals(data, fileBytes(100 * 512, 512));

        // IN whose last writable buffer holds the end of the data and the status byte.
        long buf = buffer(513);
        assertEquals(513, run(r(header(T_IN, 100), HEADER_SIZE), w(buf, 513)));
        assertArrayEquals(data, mem.read(buf, 512));
        assertEquals(S_OK, mem.getByte(buf + 512));
    }

    @Test
    void flush() throws Exception {
        rig();
        long st = status();
        assertEquals(1, run(r(header(T_FLUSH, 0), HEADER_SIZE), w(st, 1)));
        assertEquals(S_OK, mem.getByte(st));
    }

    @Test
    void getIdIsTheSerialPaddedWithNuls() throws Exception {
        rig();
        long id = buffer(ID_BYTES);
        long st = status();
        assertEquals(ID_BYTES + 1, run(r(header(T_GET_ID, 0), HEADER_SIZE), w(id, ID_BYTES), w(st, 1)));
        assertEquals(S_OK, mem.getByte(st));
        byte[] want = Arrays.copyOf(SERIAL.getBytes(StandardCharsets.US_ASCII), ID_BYTES);
        assertArrayEquals(want, mem.read(id, ID_BYTES));

        // The same answer when the driver splits its 20 bytes over two buffers.
        long a = buffer(7);
        long b = buffer(13);
        long st2 = status();
        assertEquals(ID_BYTES + 1, run(r(header(T_GET_ID, 0), HEADER_SIZE), w(a, 7), w(b, 13), w(st2, 1)));
        byte[] got = new byte[ID_BYTES];
        System.arraycopy(mem.read(a, 7), 0, got, 0, 7);
        System.arraycopy(mem.read(b, 13), 0, got, 7, 13);
        assertArrayEquals(want, got);
    }

    @Test
    void discardPunchesAHole() throws Exception {
        rig();
        int fd = image.dataFd(false);
        assertEquals(DISK, Libc.lseekRaw(fd, 0, Libc.SEEK_HOLE), "fully allocated before");
        long st = status();
        assertEquals(1, run(r(header(T_DISCARD, 0), HEADER_SIZE), r(segment(128, 128, 0), DWZ_SEGMENT_SIZE), w(st, 1)));
        assertEquals(S_OK, mem.getByte(st));
        assertEquals(65536, Libc.lseekRaw(fd, 0, Libc.SEEK_HOLE), "hole starts at sector 128");
        assertEquals(131072, Libc.lseekRaw(fd, 65536, Libc.SEEK_DATA), "data again after 128 sectors");
        assertArrayEquals(new byte[65536], fileBytes(65536, 65536));
        assertEquals(DISK, Files.size(file), "the image keeps its size");
        assertArrayEquals(filled(512, 0x5A), fileBytes(131072, 512));
    }

    @Test
    void writeZeroesWithoutUnmapReadsBackZeroes() throws Exception {
        rig();
        long st = status();
        assertEquals(1, run(r(header(T_WRITE_ZEROES, 0), HEADER_SIZE), r(segment(16, 8, 0), DWZ_SEGMENT_SIZE), w(st, 1)));
        assertEquals(S_OK, mem.getByte(st));
        assertArrayEquals(new byte[4096], fileBytes(16 * 512, 4096));
        assertArrayEquals(filled(512, 0x5A), fileBytes(15 * 512, 512));
        assertArrayEquals(filled(512, 0x5A), fileBytes(24 * 512, 512));
        long buf = buffer(4096);
        long st2 = status();
        assertEquals(4097, run(r(header(T_IN, 16), HEADER_SIZE), w(buf, 4096), w(st2, 1)));
        assertArrayEquals(new byte[4096], mem.read(buf, 4096), "reads through the handler return zeroes");
        assertEquals(DISK, Files.size(file));
    }

    @Test
    void writeZeroesWithUnmapReadsBackZeroesAndDeallocates() throws Exception {
        rig();
        int fd = image.dataFd(false);
        long st = status();
        assertEquals(1, run(r(header(T_WRITE_ZEROES, 0), HEADER_SIZE), r(segment(256, 256, DWZ_FLAG_UNMAP), DWZ_SEGMENT_SIZE),
                w(st, 1)));
        assertEquals(S_OK, mem.getByte(st));
        assertArrayEquals(new byte[131072], fileBytes(256 * 512, 131072));
        assertEquals(256 * 512, Libc.lseekRaw(fd, 0, Libc.SEEK_HOLE), "unmap punched a hole");
        long buf = buffer(512);
        assertEquals(513, run(r(header(T_IN, 300), HEADER_SIZE), w(buf, 512), w(status(), 1)));
        assertArrayEquals(new byte[512], mem.read(buf, 512));
    }

    @Test
    void badDiscardAndWriteZeroesSegments() throws Exception {
        rig();
        long st = status();
        run(r(header(T_DISCARD, 0), HEADER_SIZE), r(segment(0, 8, DWZ_FLAG_UNMAP), DWZ_SEGMENT_SIZE), w(st, 1));
        assertEquals(S_UNSUPP, mem.getByte(st), "unmap flag on DISCARD");
        st = status();
        run(r(header(T_WRITE_ZEROES, 0), HEADER_SIZE), r(segment(0, 8, 2), DWZ_SEGMENT_SIZE), w(st, 1));
        assertEquals(S_UNSUPP, mem.getByte(st), "unknown flag");
        st = status();
        long two = mem.allocate(32);
        mem.putLong(two, 0);
        mem.putInt(two + 8, 8);
        mem.putLong(two + 16, 64);
        mem.putInt(two + 24, 8);
        run(r(header(T_DISCARD, 0), HEADER_SIZE), r(two, 32), w(st, 1));
        assertEquals(S_UNSUPP, mem.getByte(st), "more segments than max_discard_seg");
        st = status();
        run(r(header(T_WRITE_ZEROES, 0), HEADER_SIZE), r(segment(0, 8, 0), 8), w(st, 1));
        assertEquals(S_IOERR, mem.getByte(st), "truncated segment");
        st = status();
        run(r(header(T_WRITE_ZEROES, 0), HEADER_SIZE), r(segment(SECTORS - 4, 8, 0), DWZ_SEGMENT_SIZE), w(st, 1));
        assertEquals(S_IOERR, mem.getByte(st), "past the end");
        assertArrayEquals(filled(DISK, 0x5A), Files.readAllBytes(file), "nothing was zeroed");
    }

    @Test
    void sectorsOutOfRangeFailWithIoErr() throws Exception {
        rig();
        long buf = buffer(1024);
        long st = status();
        assertEquals(512 + 1, run(r(header(T_IN, SECTORS), HEADER_SIZE), w(buf, 512), w(st, 1)));
        assertEquals(S_IOERR, mem.getByte(st), "first sector past the end");
        st = status();
        assertEquals(1024 + 1, run(r(header(T_IN, SECTORS - 1), HEADER_SIZE), w(buf, 1024), w(st, 1)));
        assertEquals(S_IOERR, mem.getByte(st), "runs one sector past the end");
        st = status();
        assertEquals(512 + 1, run(r(header(T_IN, SECTORS - 1), HEADER_SIZE), w(buf, 512), w(st, 1)));
        assertEquals(S_OK, mem.getByte(st), "the last sector is readable");
        assertArrayEquals(filled(512, 0x5A), mem.read(buf, 512));

        long src = buffer(512);
        mem.write(src, pattern(512, 3));
        for (long sector : new long[] {SECTORS, -1L, Long.MIN_VALUE, 1L << 55}) {
            st = status();
            assertEquals(1, run(r(header(T_OUT, sector), HEADER_SIZE), r(src, 512), w(st, 1)));
            assertEquals(S_IOERR, mem.getByte(st), "OUT at sector " + Long.toUnsignedString(sector));
        }
        assertArrayEquals(filled(DISK, 0x5A), Files.readAllBytes(file), "nothing was written");
    }

    @Test
    void lengthNotAMultipleOf512FailsWithIoErr() throws Exception {
        rig();
        long src = buffer(513);
        long st = status();
        assertEquals(1, run(r(header(T_OUT, 0), HEADER_SIZE), r(src, 513), w(st, 1)));
        assertEquals(S_IOERR, mem.getByte(st));
        long dst = buffer(100);
        st = status();
        assertEquals(101, run(r(header(T_IN, 0), HEADER_SIZE), w(dst, 100), w(st, 1)));
        assertEquals(S_IOERR, mem.getByte(st));
        assertArrayEquals(filled(100, 0xEE), mem.read(dst, 100), "no data transferred");
        assertArrayEquals(filled(DISK, 0x5A), Files.readAllBytes(file));
    }

    @Test
    void unknownTypesAreUnsupported() throws Exception {
        rig();
        for (int type : new int[] {99, 10, 2, 14, 0x8000_0000}) {
            long st = status();
            assertEquals(1, run(r(header(type, 0), HEADER_SIZE), w(st, 1)), "type " + type);
            assertEquals(S_UNSUPP, mem.getByte(st), "type " + type);
        }
    }

    @Test
    void writesToAReadOnlyImageFail() throws Exception {
        rig(true);
        long src = buffer(512);
        mem.write(src, pattern(512, 9));
        long st = status();
        assertEquals(1, run(r(header(T_OUT, 0), HEADER_SIZE), r(src, 512), w(st, 1)));
        assertEquals(S_IOERR, mem.getByte(st), "OUT");
        st = status();
        run(r(header(T_DISCARD, 0), HEADER_SIZE), r(segment(0, 8, 0), DWZ_SEGMENT_SIZE), w(st, 1));
        assertEquals(S_IOERR, mem.getByte(st), "DISCARD");
        st = status();
        run(r(header(T_WRITE_ZEROES, 0), HEADER_SIZE), r(segment(0, 8, 0), DWZ_SEGMENT_SIZE), w(st, 1));
        assertEquals(S_IOERR, mem.getByte(st), "WRITE_ZEROES");
        st = status();
        run(r(header(T_FLUSH, 0), HEADER_SIZE), w(st, 1));
        assertEquals(S_OK, mem.getByte(st), "FLUSH has nothing to do");
        long dst = buffer(512);
        st = status();
        assertEquals(513, run(r(header(T_IN, 0), HEADER_SIZE), w(dst, 512), w(st, 1)));
        assertEquals(S_OK, mem.getByte(st), "reads work");
        assertArrayEquals(filled(DISK, 0x5A), Files.readAllBytes(file));
    }

    @Test
    void chainWithoutAStatusByteIsReturnedWithLengthZero() throws Exception {
        rig();
        long h = header(T_OUT, 0);
        long src = buffer(512);
        mem.write(src, pattern(512, 5));
        assertEquals(0, run(r(h, HEADER_SIZE), r(src, 512)));
        assertArrayEquals(filled(DISK, 0x5A), Files.readAllBytes(file), "nothing executed");
        assertArrayEquals(pattern(512, 5), mem.read(src, 512), "guest buffer untouched");
        assertEquals(0, queue.inflight(), "the slot was released");
    }

    @Test
    void headerShorterThan16BytesFailsWithIoErr() throws Exception {
        rig();
        long h = header(T_IN, 0);
        long st = status();
        assertEquals(1, run(r(h, 8), w(st, 1)));
        assertEquals(S_IOERR, mem.getByte(st));
        st = status();
        assertEquals(1, run(r(h, 15), w(st, 1)));
        assertEquals(S_IOERR, mem.getByte(st));
        st = status();
        long dst = buffer(512);
        assertEquals(1, run(w(dst, 512), w(st, 1)), "no readable part at all: only the status byte is written");
        assertEquals(S_IOERR, mem.getByte(st));
    }

    @Test
    void unwalkableChainIsReturnedWithLengthZero() throws Exception {
        rig();
        long st = status();
        assertEquals(0, run(r(header(T_IN, 0), HEADER_SIZE), w(0x9000_0000L, 512), w(st, 1)));
        assertEquals(0xEE, mem.getByte(st), "no status written");
        assertEquals(0, queue.inflight());
    }

    @Test
    void aBatchOfRequestsCompletesWithTheirOwnHeadsAndLengths() throws Exception {
        rig();
        long src = buffer(2048);
        byte[] data = pattern(2048, 11);
        mem.write(src, data);
        long dst = buffer(1024);
        long st1 = status();
        long st2 = status();
        long st3 = status();
        Desc[] out = {r(header(T_OUT, 40), HEADER_SIZE), r(src, 2048), w(st1, 1)};
        Desc[] in = {r(header(T_IN, 1000), HEADER_SIZE), w(dst, 1024), w(st2, 1)};
        Desc[] flush = {r(header(T_FLUSH, 0), HEADER_SIZE), w(st3, 1)};
        Map<Integer, Used> used = runBatch(out, in, flush);
        // heads are assigned in order by the mock: 0, 3, 6 for a fresh table
        assertEquals(1, used.get(0).len());
        assertEquals(1025, used.get(3).len());
        assertEquals(1, used.get(6).len());
        assertEquals(S_OK, mem.getByte(st1));
        assertEquals(S_OK, mem.getByte(st2));
        assertEquals(S_OK, mem.getByte(st3));
        assertArrayEquals(data, fileBytes(40 * 512, 2048));
        assertArrayEquals(filled(1024, 0x5A), mem.read(dst, 1024));
        assertEquals(3, queue.completed());
    }

    @Test
    void inWithoutDataCompletesOk() throws Exception {
        rig();
        long st = status();
        assertEquals(1, run(r(header(T_IN, 0), HEADER_SIZE), w(st, 1)));
        assertEquals(S_OK, mem.getByte(st));
    }

    @Test
    void writethroughWritesStillLandInTheFile() throws Exception {
        rig();
        device.setWriteback(false); // OUT goes with RWF_DSYNC
        long src = buffer(4096);
        byte[] data = pattern(4096, 13);
        mem.write(src, data);
        long st = status();
        assertEquals(1, run(r(header(T_OUT, 64), HEADER_SIZE), r(src, 4096), w(st, 1)));
        assertEquals(S_OK, mem.getByte(st));
        assertArrayEquals(data, fileBytes(64 * 512, 4096));
    }
}
