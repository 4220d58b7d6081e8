package io.vhostblk.blk;

import io.vhostblk.image.CacheMode;
import io.vhostblk.image.RawImage;
import io.vhostblk.vhostuser.ProtocolFeature;
import io.vhostblk.virtq.VirtioFeature;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.RandomAccessFile;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;

import static io.vhostblk.blk.BlkConfigTest.le;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Features, config space and write-cache mode of {@link BlkDevice} over a raw file image. */
class BlkDeviceTest {
    @TempDir
    Path dir;

    RawImage image(long size, boolean readOnly) throws Exception {
        Path f = dir.resolve("disk-" + size + "-" + readOnly + ".img");
        try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "rw")) {
            raf.setLength(size);
        }
        return RawImage.open(f.toString(), readOnly, CacheMode.WRITEBACK);
    }

    static boolean has(long features, int bit) {
        return (features & (1L << bit)) != 0;
    }

    @Test
    void configSpaceOfAWritableImage() throws Exception {
        long size = (1L << 20) + 100; // a partial last sector is not exposed
        try (RawImage img = image(size, false)) {
            BlkDevice dev = new BlkDevice(img, 4, "s");
            MemorySegment cfg = Arena.ofAuto().allocate(96, 8);
            dev.writeConfig(cfg);
            assertEquals(2048, le(cfg, 0, 8), "capacity in 512-byte sectors");
            assertEquals(2048, dev.capacitySectors());
            assertEquals(BlkDevice.SIZE_MAX, le(cfg, 8, 4));
            assertEquals(BlkDevice.SEG_MAX, le(cfg, 12, 4));
            assertEquals(512, le(cfg, 20, 4), "blk_size of a regular file");
            int pbs = img.physicalBlockSize();
            assertEquals(Integer.numberOfTrailingZeros(pbs / 512), le(cfg, 24, 1), "physical_block_exp");
            assertEquals(pbs / 512, le(cfg, 26, 2), "min_io_size");
            assertEquals(1, le(cfg, 32, 1), "writeback before any ack");
            assertEquals(4, le(cfg, 34, 2), "num_queues");
            assertEquals(BlkDevice.MAX_DWZ_SECTORS, le(cfg, 36, 4));
            assertEquals(1, le(cfg, 40, 4), "max_discard_seg");
            assertEquals(8, le(cfg, 44, 4), "discard_sector_alignment: 4 KiB");
            assertEquals(BlkDevice.MAX_DWZ_SECTORS, le(cfg, 48, 4));
            assertEquals(1, le(cfg, 52, 4), "max_write_zeroes_seg");
            assertEquals(1, le(cfg, 56, 1), "write_zeroes_may_unmap");

            dev.setWriteback(false);
            dev.writeConfig(cfg);
            assertEquals(0, le(cfg, 32, 1), "writeback follows setWriteback");
            dev.setWriteback(true);
            dev.writeConfig(cfg);
            assertEquals(1, le(cfg, 32, 1));
        }
    }

    @Test
    void featuresOfAWritableImage() throws Exception {
        try (RawImage img = image(1 << 20, false)) {
            long f = new BlkDevice(img, 1, null).offeredFeatures();
            assertTrue(has(f, BlkFeature.DISCARD));
            assertTrue(has(f, BlkFeature.WRITE_ZEROES));
            assertFalse(has(f, BlkFeature.RO));
            for (int b : new int[] {BlkFeature.SIZE_MAX, BlkFeature.SEG_MAX, BlkFeature.BLK_SIZE, BlkFeature.TOPOLOGY,
                    BlkFeature.FLUSH, BlkFeature.CONFIG_WCE, BlkFeature.MQ, VirtioFeature.VERSION_1,
                    VirtioFeature.RING_INDIRECT_DESC, VirtioFeature.RING_EVENT_IDX, ProtocolFeature.VHOST_USER_F_PROTOCOL_FEATURES}) {
                assertTrue(has(f, b), "bit " + b);
            }
            assertFalse(has(f, BlkFeature.GEOMETRY));
            assertFalse(has(f, VirtioFeature.RING_PACKED));
        }
    }

    @Test
    void featuresOfAReadOnlyImage() throws Exception {
        try (RawImage img = image(1 << 20, true)) {
            BlkDevice dev = new BlkDevice(img, 1, null);
            long f = dev.offeredFeatures();
            assertTrue(dev.readOnly());
            assertTrue(has(f, BlkFeature.RO));
            assertFalse(has(f, BlkFeature.DISCARD), "no DISCARD on a read-only image");
            assertFalse(has(f, BlkFeature.WRITE_ZEROES), "no WRITE_ZEROES on a read-only image");
            assertTrue(has(f, BlkFeature.FLUSH));
        }
    }

    @Test
    void ackedFeaturesDecideTheCacheMode() throws Exception {
        try (RawImage img = image(1 << 20, false)) {
            BlkDevice dev = new BlkDevice(img, 1, null);
            long flush = 1L << BlkFeature.FLUSH;
            long wce = 1L << BlkFeature.CONFIG_WCE;
            dev.ack(0);
            assertFalse(dev.writeback(), "no FLUSH, no CONFIG_WCE: write-through");
            dev.ack(flush);
            assertTrue(dev.writeback(), "FLUSH without CONFIG_WCE: writeback");
            assertEquals(flush, dev.ackedFeatures());
            assertTrue(dev.acked(BlkFeature.FLUSH));
            assertFalse(dev.acked(BlkFeature.CONFIG_WCE));
            dev.ack(flush | wce);
            assertTrue(dev.writeback(), "CONFIG_WCE and FLUSH: writeback");
            dev.ack(wce);
            assertFalse(dev.writeback(), "virtio-blk device requirement (reference §2.3): CONFIG_WCE without FLUSH must start write-through");
        }
    }

    @Test
    void serialIsAtMost20AsciiBytes() throws Exception {
        try (RawImage img = image(1 << 20, false)) {
            assertArrayEquals("12345678901234567890".getBytes(), new BlkDevice(img, 1, "12345678901234567890").serial());
            assertArrayEquals(new byte[0], new BlkDevice(img, 1, null).serial());
            assertThrows(IllegalArgumentException.class, () -> new BlkDevice(img, 1, "123456789012345678901"));
        }
    }
}
