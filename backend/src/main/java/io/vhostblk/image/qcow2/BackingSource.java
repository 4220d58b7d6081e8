package io.vhostblk.image.qcow2;

/** What unallocated clusters read through to: a qcow2 or raw backing image. */
interface BackingSource extends AutoCloseable {
    /** Virtual size; reads past it are zeros (the caller handles that). */
    long size();

    /** Reads [off, off+n) (within {@link #size()}) into the iov at {@code iovOff}. */
    void readInto(long off, Iov iov, long iovOff, long n);

    String describe();

    @Override
    void close();
}
