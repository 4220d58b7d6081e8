package io.vhostblk.blk;

/** virtio-blk request header, types and status codes (virtio 1.2 §5.2.6). */
public final class BlkRequest {
    /** struct virtio_blk_req header: le32 type; le32 reserved; le64 sector. */
    public static final int HEADER_SIZE = 16;
    public static final int SECTOR_SIZE = 512;
    public static final int SECTOR_SHIFT = 9;

    public static final int T_IN = 0;
    public static final int T_OUT = 1;
    public static final int T_FLUSH = 4;
    public static final int T_GET_ID = 8;
    public static final int T_DISCARD = 11;
    public static final int T_WRITE_ZEROES = 13;

    public static final byte S_OK = 0;
    public static final byte S_IOERR = 1;
    public static final byte S_UNSUPP = 2;

    /** GET_ID answers 20 bytes. */
    public static final int ID_BYTES = 20;

    /** struct virtio_blk_discard_write_zeroes { le64 sector; le32 num_sectors; le32 flags; } */
    public static final int DWZ_SEGMENT_SIZE = 16;
    public static final int DWZ_FLAG_UNMAP = 1;

    private BlkRequest() {
    }
}
