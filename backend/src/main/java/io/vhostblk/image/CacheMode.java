package io.vhostblk.image;

/** Host page-cache use for data I/O, named as QEMU names its cache modes. */
public enum CacheMode {
    /** O_DIRECT: the host page cache is bypassed; flushes still reach the device cache. */
    NONE,
    /** Buffered I/O through the host page cache; guest FLUSH becomes fdatasync. */
    WRITEBACK;

    public static CacheMode parse(String s) {
        return switch (s) {
            case "none" -> NONE;
            case "writeback" -> WRITEBACK;
            default -> throw new IllegalArgumentException("--cache must be none or writeback, not '" + s + "'");
        };
    }
}
