package io.vhostblk.virtq;

/** Why a descriptor chain was refused. Codes are negative so walk() can return them. */
public final class ChainError {
    public static final int HEAD_OUT_OF_RANGE = -1;
    public static final int NEXT_OUT_OF_RANGE = -2;
    public static final int TOO_LONG = -3;
    public static final int BAD_ADDRESS = -4;
    public static final int READABLE_AFTER_WRITABLE = -5;
    public static final int INDIRECT_NOT_NEGOTIATED = -6;
    public static final int NESTED_INDIRECT = -7;
    public static final int BAD_INDIRECT_TABLE = -8;
    public static final int INDIRECT_WITH_NEXT = -9;
    public static final int TOO_MANY_BUFFERS = -10;

    private ChainError() {
    }

    public static String describe(int code) {
        return switch (code) {
            case HEAD_OUT_OF_RANGE -> "head index out of range";
            case NEXT_OUT_OF_RANGE -> "next index out of range";
            case TOO_LONG -> "chain longer than its table (loop?)";
            case BAD_ADDRESS -> "buffer outside guest memory";
            case READABLE_AFTER_WRITABLE -> "device-readable descriptor after a writable one";
            case INDIRECT_NOT_NEGOTIATED -> "indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC";
            case NESTED_INDIRECT -> "indirect descriptor inside an indirect table";
            case BAD_INDIRECT_TABLE -> "indirect table of bad length or outside guest memory";
            case INDIRECT_WITH_NEXT -> "descriptor with both INDIRECT and NEXT";
            case TOO_MANY_BUFFERS -> "more buffers than a request may have";
            default -> "error " + code;
        };
    }
}
