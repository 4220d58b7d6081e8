package io.vhostblk.blk;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertEquals;

/** struct virtio_blk_config as laid out by {@link BlkConfig#write}, checked byte by byte. */
class BlkConfigTest {

    /** Little-endian unsigned read of {@code n} bytes, independent of the code under test. */
    static long le(MemorySegment s, int off, int n) {
        long v = 0;
        for (int i = n - 1; i >= 0; i--) {
            v = (v << 8) | Byte.toUnsignedLong(s.get(JAVA_BYTE, off + i));
        }
        return v;
    }

    @Test
    void everyFieldAtItsVirtio12Offset() {
        MemorySegment out = Arena.ofAuto().allocate(96, 8);
        out.fill((byte) 0xAA); // garbage the writer must clear
        BlkConfig.Values v = new BlkConfig.Values(0x0102_0304_0506_0708L, 0x11121314, 0x21222324, 4096, 3,
                8, 0x31323334, true, 0x4142, 0x51525354, 0x61626364, 0x71727374, 0x0A0B0C0D, 0x1A1B1C1D, true);
        BlkConfig.write(v, out);

        // offset, size, expected — virtio 1.2 §5.2.4 (reference doc §2.2)
        long[][] table = {
                {0, 8, 0x0102_0304_0506_0708L},   // capacity
                {8, 4, 0x11121314},               // size_max
                {12, 4, 0x21222324},              // seg_max
                {16, 2, 0},                       // geometry.cylinders (GEOMETRY not offered)
                {18, 1, 0},                       // geometry.heads
                {19, 1, 0},                       // geometry.sectors
                {20, 4, 4096},                    // blk_size
                {24, 1, 3},                       // topology.physical_block_exp
                {25, 1, 0},                       // topology.alignment_offset
                {26, 2, 8},                       // topology.min_io_size
                {28, 4, 0x31323334},              // topology.opt_io_size
                {32, 1, 1},                       // writeback
                {33, 1, 0},                       // unused0
                {34, 2, 0x4142},                  // num_queues
                {36, 4, 0x51525354},              // max_discard_sectors
                {40, 4, 0x61626364},              // max_discard_seg
                {44, 4, 0x71727374},              // discard_sector_alignment
                {48, 4, 0x0A0B0C0D},              // max_write_zeroes_sectors
                {52, 4, 0x1A1B1C1D},              // max_write_zeroes_seg
                {56, 1, 1},                       // write_zeroes_may_unmap
                {57, 3, 0},                       // unused1
        };
        int covered = 0;
        for (long[] f : table) {
            assertEquals(f[2], le(out, (int) f[0], (int) f[1]), "field at offset " + f[0]);
            assertEquals(covered, f[0], "the table covers every byte");
            covered += (int) f[1];
        }
        assertEquals(BlkConfig.SIZE, covered);
        assertEquals(0xAA, Byte.toUnsignedInt(out.get(JAVA_BYTE, BlkConfig.SIZE)), "nothing written past SIZE");

        // The named offsets agree with the table.
        assertEquals(0, BlkConfig.CAPACITY);
        assertEquals(20, BlkConfig.BLK_SIZE);
        assertEquals(32, BlkConfig.WRITEBACK);
        assertEquals(34, BlkConfig.NUM_QUEUES);
        assertEquals(56, BlkConfig.WRITE_ZEROES_MAY_UNMAP);
        assertEquals(60, BlkConfig.SIZE);
    }

    @Test
    void booleansWriteZeroWhenFalse() {
        MemorySegment out = Arena.ofAuto().allocate(64, 8);
        out.fill((byte) 0xFF);
        BlkConfig.write(new BlkConfig.Values(1, 0, 0, 512, 0, 1, 0, false, 1, 0, 0, 0, 0, 0, false), out);
        assertEquals(0, le(out, 32, 1), "writeback");
        assertEquals(0, le(out, 56, 1), "write_zeroes_may_unmap");
        assertEquals(1, le(out, 0, 8));
        assertEquals(512, le(out, 20, 4));
    }
}
