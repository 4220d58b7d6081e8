package io.vhostblk.image;

/**
 * A disk image the backend serves. Raw files and block devices map guest sectors 1:1 onto
 * file offsets; {@link #dataFd(boolean)} gives the descriptor the I/O engines read and write.
 */
public interface BlockImage extends AutoCloseable {
    /** Size in bytes as the guest sees it. */
    long size();

    /** Smallest unit of I/O the host accepts with O_DIRECT (also reported to the guest). */
    int logicalBlockSize();

    int physicalBlockSize();

    boolean readOnly();

    boolean isBlockDevice();

    /** True when {@link #dataFd(boolean) dataFd(true)} is opened with O_DIRECT. */
    boolean direct();

    /**
     * The fd for data I/O: with {@code aligned} the O_DIRECT one (if the cache mode is none),
     * otherwise a buffered fd to the same file, for requests whose buffers O_DIRECT cannot take.
     */
    int dataFd(boolean aligned);

    /** Operator-facing description: path, format, size. */
    String describe();

    @Override
    void close();
}
