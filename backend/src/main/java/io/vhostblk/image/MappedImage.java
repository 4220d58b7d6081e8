package io.vhostblk.image;

/**
 * An image whose guest offsets do not map 1:1 onto one file (qcow2: clusters, backing chains,
 * compression). It serves guest-offset I/O itself, scattering into or gathering from the
 * request's iovecs (guest memory); the datapath runs these calls on I/O threads
 * ({@link io.vhostblk.io.ImageEngine}). Implementations must be safe for concurrent calls.
 *
 * <p>Methods return {@code -errno} on failure.
 */
public interface MappedImage extends BlockImage {
    /**
     * Reads {@code [offset, offset + iov total)} into the {@code iovcnt} iovecs at {@code iovAddr};
     * returns the bytes read (the whole request) or -errno.
     */
    int readv(long offset, long iovAddr, int iovcnt);

    /**
     * Writes the iovecs at {@code offset}; with {@code fua} the data is durable when this returns.
     * Returns the bytes written (the whole request) or -errno.
     */
    int writev(long offset, long iovAddr, int iovcnt, boolean fua);

    /** Makes every completed write durable (data and metadata); 0 on success. */
    int flush();

    /** Deallocates the range if the format can (a hint; reads after it may return anything); 0 on success. */
    int discard(long offset, long length);

    /** The range reads as zeroes afterwards; with {@code mayUnmap} it may also be deallocated; 0 on success. */
    int writeZeroes(long offset, long length, boolean mayUnmap);

    /** Mapped images are never read through a raw fd. */
    @Override
    default int dataFd(boolean aligned) {
        return -1;
    }

    @Override
    default boolean direct() {
        return false;
    }
}
