package io.vhostblk.frontend;

import io.vhostblk.blk.BlkConfig;

import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED;

/**
 * struct virtio_blk_config as a frontend reads it with GET_CONFIG. Fields beyond the bytes the
 * backend returned read as 0; which fields are meaningful depends on the negotiated features
 * (e.g. {@code numQueues} only with VIRTIO_BLK_F_MQ).
 *
 * @param capacity capacity in 512-byte sectors
 * @param length   how many config bytes this was parsed from
 */
public record BlkDeviceConfig(long capacity, int sizeMax, int segMax, int cylinders, int heads, int sectors,
                              int blkSize, int physicalBlockExp, int alignmentOffset, int minIoSize, int optIoSize,
                              int writeback, int numQueues, int maxDiscardSectors, int maxDiscardSeg,
                              int discardSectorAlignment, int maxWriteZeroesSectors, int maxWriteZeroesSeg,
                              int writeZeroesMayUnmap, int length) {

    /** Capacity in bytes. */
    public long capacityBytes() {
        return capacity << 9;
    }

    public static BlkDeviceConfig parse(byte[] b) {
        MemorySegment full = MemorySegment.ofArray(new byte[Math.max(b.length, BlkConfig.SIZE)]);
        MemorySegment.copy(MemorySegment.ofArray(b), 0, full, 0, b.length);
        return new BlkDeviceConfig(
                full.get(JAVA_LONG_UNALIGNED, BlkConfig.CAPACITY),
                full.get(JAVA_INT_UNALIGNED, BlkConfig.SIZE_MAX),
                full.get(JAVA_INT_UNALIGNED, BlkConfig.SEG_MAX),
                Short.toUnsignedInt(full.get(JAVA_SHORT_UNALIGNED, BlkConfig.GEOMETRY_CYLINDERS)),
                Byte.toUnsignedInt(full.get(JAVA_BYTE, BlkConfig.GEOMETRY_HEADS)),
                Byte.toUnsignedInt(full.get(JAVA_BYTE, BlkConfig.GEOMETRY_SECTORS)),
                full.get(JAVA_INT_UNALIGNED, BlkConfig.BLK_SIZE),
                Byte.toUnsignedInt(full.get(JAVA_BYTE, BlkConfig.PHYSICAL_BLOCK_EXP)),
                Byte.toUnsignedInt(full.get(JAVA_BYTE, BlkConfig.ALIGNMENT_OFFSET)),
                Short.toUnsignedInt(full.get(JAVA_SHORT_UNALIGNED, BlkConfig.MIN_IO_SIZE)),
                full.get(JAVA_INT_UNALIGNED, BlkConfig.OPT_IO_SIZE),
                Byte.toUnsignedInt(full.get(JAVA_BYTE, BlkConfig.WRITEBACK)),
                Short.toUnsignedInt(full.get(JAVA_SHORT_UNALIGNED, BlkConfig.NUM_QUEUES)),
                full.get(JAVA_INT_UNALIGNED, BlkConfig.MAX_DISCARD_SECTORS),
                full.get(JAVA_INT_UNALIGNED, BlkConfig.MAX_DISCARD_SEG),
                full.get(JAVA_INT_UNALIGNED, BlkConfig.DISCARD_SECTOR_ALIGNMENT),
                full.get(JAVA_INT_UNALIGNED, BlkConfig.MAX_WRITE_ZEROES_SECTORS),
                full.get(JAVA_INT_UNALIGNED, BlkConfig.MAX_WRITE_ZEROES_SEG),
                Byte.toUnsignedInt(full.get(JAVA_BYTE, BlkConfig.WRITE_ZEROES_MAY_UNMAP)),
                b.length);
    }
}
