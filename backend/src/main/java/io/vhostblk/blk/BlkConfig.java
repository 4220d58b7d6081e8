package io.vhostblk.blk;

import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED;

/**
 * struct virtio_blk_config (virtio 1.2 §5.2.4), little endian, 60 bytes up to and including
 * the write-zeroes fields. Offsets are named after the spec's fields.
 */
public final class BlkConfig {
    public static final int CAPACITY = 0;
    public static final int SIZE_MAX = 8;
    public static final int SEG_MAX = 12;
    public static final int GEOMETRY_CYLINDERS = 16;
    public static final int GEOMETRY_HEADS = 18;
    public static final int GEOMETRY_SECTORS = 19;
    public static final int BLK_SIZE = 20;
    public static final int PHYSICAL_BLOCK_EXP = 24;
    public static final int ALIGNMENT_OFFSET = 25;
    public static final int MIN_IO_SIZE = 26;
    public static final int OPT_IO_SIZE = 28;
    public static final int WRITEBACK = 32;
    public static final int UNUSED0 = 33;
    public static final int NUM_QUEUES = 34;
    public static final int MAX_DISCARD_SECTORS = 36;
    public static final int MAX_DISCARD_SEG = 40;
    public static final int DISCARD_SECTOR_ALIGNMENT = 44;
    public static final int MAX_WRITE_ZEROES_SECTORS = 48;
    public static final int MAX_WRITE_ZEROES_SEG = 52;
    public static final int WRITE_ZEROES_MAY_UNMAP = 56;
    /** Size of the structure through write_zeroes_may_unmap and its padding. */
    public static final int SIZE = 60;

    private BlkConfig() {
    }

    /** The values a device reports; {@link #write} lays them out. */
    public record Values(long capacitySectors, int sizeMax, int segMax, int blkSize, int physicalBlockExp,
                         int minIoSize, int optIoSize, boolean writeback, int numQueues, int maxDiscardSectors,
                         int maxDiscardSeg, int discardSectorAlignment, int maxWriteZeroesSectors,
                         int maxWriteZeroesSeg, boolean writeZeroesMayUnmap) {
    }

    public static void write(Values v, MemorySegment out) {
        out.asSlice(0, SIZE).fill((byte) 0);
        out.set(JAVA_LONG_UNALIGNED, CAPACITY, v.capacitySectors());
        out.set(JAVA_INT_UNALIGNED, SIZE_MAX, v.sizeMax());
        out.set(JAVA_INT_UNALIGNED, SEG_MAX, v.segMax());
        out.set(JAVA_INT_UNALIGNED, BLK_SIZE, v.blkSize());
        out.set(JAVA_BYTE, PHYSICAL_BLOCK_EXP, (byte) v.physicalBlockExp());
        out.set(JAVA_BYTE, ALIGNMENT_OFFSET, (byte) 0);
        out.set(JAVA_SHORT_UNALIGNED, MIN_IO_SIZE, (short) v.minIoSize());
        out.set(JAVA_INT_UNALIGNED, OPT_IO_SIZE, v.optIoSize());
        out.set(JAVA_BYTE, WRITEBACK, (byte) (v.writeback() ? 1 : 0));
        out.set(JAVA_SHORT_UNALIGNED, NUM_QUEUES, (short) v.numQueues());
        out.set(JAVA_INT_UNALIGNED, MAX_DISCARD_SECTORS, v.maxDiscardSectors());
        out.set(JAVA_INT_UNALIGNED, MAX_DISCARD_SEG, v.maxDiscardSeg());
        out.set(JAVA_INT_UNALIGNED, DISCARD_SECTOR_ALIGNMENT, v.discardSectorAlignment());
        out.set(JAVA_INT_UNALIGNED, MAX_WRITE_ZEROES_SECTORS, v.maxWriteZeroesSectors());
        out.set(JAVA_INT_UNALIGNED, MAX_WRITE_ZEROES_SEG, v.maxWriteZeroesSeg());
        out.set(JAVA_BYTE, WRITE_ZEROES_MAY_UNMAP, (byte) (v.writeZeroesMayUnmap() ? 1 : 0));
    }
}
