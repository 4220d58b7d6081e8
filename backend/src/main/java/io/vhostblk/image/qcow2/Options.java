package io.vhostblk.image.qcow2;

import io.vhostblk.image.CacheMode;

/**
 * How a qcow2 image is opened.
 *
 * @param l2CacheBytes       memory for cached L2 tables (at least two tables are always kept)
 * @param refcountCacheBytes memory for cached refcount blocks (at least two)
 * @param cache              NONE: guest data through O_DIRECT where the request is aligned;
 *                           WRITEBACK: through the page cache. Metadata always goes through the
 *                           page cache and is made durable by {@code flush()}.
 * @param lock               take QEMU-compatible OFD locks on the image files
 * @param discardPunchesHoles release host space (fallocate PUNCH_HOLE) of clusters freed by discard
 */
public record Options(long l2CacheBytes, long refcountCacheBytes, CacheMode cache, boolean lock,
                      boolean discardPunchesHoles) {
    public static Options defaults() {
        return new Options(4L << 20, 1L << 20, CacheMode.WRITEBACK, true, true);
    }

    public Options withCache(CacheMode c) {
        return new Options(l2CacheBytes, refcountCacheBytes, c, lock, discardPunchesHoles);
    }

    public Options withCacheSizes(long l2, long refcount) {
        return new Options(l2, refcount, cache, lock, discardPunchesHoles);
    }

    public Options withLock(boolean l) {
        return new Options(l2CacheBytes, refcountCacheBytes, cache, l, discardPunchesHoles);
    }
}
