package io.vhostblk.io;

import io.vhostblk.linux.IoUring;

/**
 * Asynchronous data I/O for one worker thread. Operations are queued with a 64-bit token and
 * pushed with {@link #submit()}; completions come back through {@link #reap} with the result
 * (bytes, 0, or -errno). {@link #completionFd()} becomes readable when completions wait, so the
 * worker can sleep in epoll on kicks and completions together.
 *
 * <p>Buffers are iovec arrays pointing into guest memory: engines copy nothing. Queueing
 * returns false only when the engine is full; the caller submits, reaps and retries.
 */
public interface IoEngine extends AutoCloseable {
    boolean readv(int fd, long iovAddr, int iovcnt, long offset, long token);

    boolean writev(int fd, long iovAddr, int iovcnt, long offset, boolean dsync, long token);

    boolean fdatasync(int fd, long token);

    boolean fallocate(int fd, int mode, long offset, long len, long token);

    /** Deallocates a range (a hint): punches a hole in a file. */
    default boolean discard(int fd, long offset, long len, long token) {
        return fallocate(fd, io.vhostblk.linux.Libc.FALLOC_FL_PUNCH_HOLE | io.vhostblk.linux.Libc.FALLOC_FL_KEEP_SIZE,
                offset, len, token);
    }

    /**
     * Makes a range read as zeroes: a hole if {@code unmap} is allowed, else zeroed blocks kept
     * allocated. A host that cannot (EOPNOTSUPP) is for the caller to handle.
     */
    default boolean writeZeroes(int fd, long offset, long len, boolean unmap, long token) {
        return fallocate(fd, unmap ? io.vhostblk.linux.Libc.FALLOC_FL_PUNCH_HOLE | io.vhostblk.linux.Libc.FALLOC_FL_KEEP_SIZE
                : io.vhostblk.linux.Libc.FALLOC_FL_ZERO_RANGE | io.vhostblk.linux.Libc.FALLOC_FL_KEEP_SIZE, offset, len, token);
    }

    /** Pushes queued operations to the kernel or the I/O threads. */
    void submit();

    /** Delivers waiting completions; returns how many. */
    int reap(IoUring.CompletionHandler handler);

    /** An eventfd that is readable while completions may be waiting. */
    int completionFd();

    /** "io_uring" or "threads". */
    String name();

    @Override
    void close();
}
