package io.vhostblk.server;

import io.vhostblk.image.CacheMode;

/** Everything the backend was told on its command line, validated. */
public record BackendConfig(
        String socketPath,
        int fd,
        String blkFile,
        String format,
        boolean readOnly,
        int numQueues,
        int workers,
        int maxQueueSize,
        String serial,
        String engine,
        CacheMode cache,
        long pollUs,
        int ioThreads,
        boolean mlock,
        String controlSocket,
        long l2CacheBytes,
        long refcountCacheBytes) {

    public BackendConfig {
        if ((socketPath == null) == (fd < 0)) {
            throw new IllegalArgumentException("give exactly one of --socket-path and --fd");
        }
        if (blkFile == null) {
            throw new IllegalArgumentException("--blk-file is required");
        }
        if (!"raw".equals(format) && !"qcow2".equals(format)) {
            throw new IllegalArgumentException("--format " + format + " is not supported (raw, qcow2)");
        }
        if (numQueues < 1 || numQueues > 256) {
            throw new IllegalArgumentException("--num-queues must be 1..256, not " + numQueues);
        }
        if (workers < 1 || workers > 64) {
            throw new IllegalArgumentException("--workers must be 1..64, not " + workers);
        }
        if (maxQueueSize < 1 || maxQueueSize > 32768 || Integer.bitCount(maxQueueSize) != 1) {
            throw new IllegalArgumentException("--queue-size must be a power of two up to 32768, not " + maxQueueSize);
        }
        if (!"io_uring".equals(engine) && !"threads".equals(engine)) {
            throw new IllegalArgumentException("--engine must be io_uring or threads, not '" + engine + "'");
        }
        if (pollUs < 0 || pollUs > 1_000_000) {
            throw new IllegalArgumentException("--poll-us must be 0..1000000, not " + pollUs);
        }
        if (ioThreads < 1 || ioThreads > 256) {
            throw new IllegalArgumentException("--io-threads must be 1..256, not " + ioThreads);
        }
        if (l2CacheBytes < 64 * 1024 || l2CacheBytes > (1L << 32) || refcountCacheBytes < 64 * 1024 || refcountCacheBytes > (1L << 32)) {
            throw new IllegalArgumentException("--l2-cache-size and --refcount-cache-size must be 64k..4G");
        }
        if (serial != null && serial.length() > 20) {
            throw new IllegalArgumentException("--serial is longer than 20 bytes");
        }
    }
}
