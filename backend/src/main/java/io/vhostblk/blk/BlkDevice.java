package io.vhostblk.blk;

import io.vhostblk.image.BlockImage;
import io.vhostblk.vhostuser.ProtocolFeature;
import io.vhostblk.virtq.VirtioFeature;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;

/**
 * The virtio-blk device one backend serves: the image, the features we offer, the config space
 * and the guest-visible write-cache mode. Shared by the control thread and all workers; the
 * only mutable field, {@link #writeback()}, is volatile.
 */
public final class BlkDevice {
    /** Segments per request we accept (seg_max); the common value of QEMU, SPDK and others. */
    public static final int SEG_MAX = 126;
    /** Largest single segment (size_max). */
    public static final int SIZE_MAX = 1 << 20;
    /** Largest discard / write-zeroes extent in sectors (2 GiB). */
    public static final int MAX_DWZ_SECTORS = 1 << 22;

    private final BlockImage image;
    private final int numQueues;
    private final byte[] serial;
    private final long offered;
    private volatile boolean writeback = true;
    private volatile long acked;

    public BlkDevice(BlockImage image, int numQueues, String serial) {
        this.image = image;
        this.numQueues = numQueues;
        byte[] s = serial == null ? new byte[0] : serial.getBytes(StandardCharsets.US_ASCII);
        if (s.length > BlkRequest.ID_BYTES) {
            throw new IllegalArgumentException("--serial is longer than " + BlkRequest.ID_BYTES + " bytes");
        }
        this.serial = s;
        long f = bit(VirtioFeature.VERSION_1) | bit(VirtioFeature.RING_INDIRECT_DESC) | bit(VirtioFeature.RING_EVENT_IDX)
                | bit(ProtocolFeature.VHOST_USER_F_PROTOCOL_FEATURES)
                | bit(BlkFeature.SIZE_MAX) | bit(BlkFeature.SEG_MAX) | bit(BlkFeature.BLK_SIZE) | bit(BlkFeature.TOPOLOGY)
                | bit(BlkFeature.FLUSH) | bit(BlkFeature.CONFIG_WCE) | bit(BlkFeature.MQ);
        if (image.readOnly()) {
            f |= bit(BlkFeature.RO);
        } else {
            f |= bit(BlkFeature.DISCARD) | bit(BlkFeature.WRITE_ZEROES);
        }
        this.offered = f;
    }

    private static long bit(int b) {
        return 1L << b;
    }

    public BlockImage image() {
        return image;
    }

    public long offeredFeatures() {
        return offered;
    }

    public int numQueues() {
        return numQueues;
    }

    public long capacitySectors() {
        return image.size() >>> BlkRequest.SECTOR_SHIFT;
    }

    public byte[] serial() {
        return serial.clone();
    }

    public boolean readOnly() {
        return image.readOnly();
    }

    public boolean writeback() {
        return writeback;
    }

    public void setWriteback(boolean wb) {
        writeback = wb;
    }

    public long ackedFeatures() {
        return acked;
    }

    /**
     * Applies the features the driver acked. The initial cache mode follows FLUSH, with or
     * without CONFIG_WCE: a driver that cannot flush must get write-through (virtio-blk device
     * requirements: "If VIRTIO_BLK_F_CONFIG_WCE is negotiated but VIRTIO_BLK_F_FLUSH is not,
     * the device MUST initialize writeback to 0"). With CONFIG_WCE the driver may change it later.
     */
    public void ack(long features) {
        acked = features;
        writeback = (features & bit(BlkFeature.FLUSH)) != 0;
    }

    public boolean acked(int featureBit) {
        return (acked & bit(featureBit)) != 0;
    }

    /** Lays out the config space as of now. */
    public void writeConfig(MemorySegment out) {
        int lbs = image.logicalBlockSize();
        int pbs = Math.max(lbs, image.physicalBlockSize());
        int exp = Integer.numberOfTrailingZeros(pbs / lbs);
        int discardAlign = Math.max(lbs, 4096) / BlkRequest.SECTOR_SIZE;
        BlkConfig.write(new BlkConfig.Values(capacitySectors(), SIZE_MAX, SEG_MAX, lbs, exp, pbs / lbs, 0, writeback,
                numQueues, MAX_DWZ_SECTORS, 1, discardAlign, MAX_DWZ_SECTORS, 1, true), out);
    }
}
