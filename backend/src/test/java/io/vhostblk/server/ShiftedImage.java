package io.vhostblk.server;

import io.vhostblk.image.MappedImage;
import io.vhostblk.linux.Libc;

/**
 * A test double of a format with its own mapping: guest offset {@code x} lives at file offset
 * {@code x + HEADER}. It proves that the datapath sends mapped images through the image engine
 * (a raw 1:1 path would read and write the header instead).
 */
final class ShiftedImage implements MappedImage {
    static final long HEADER = 1 << 20;

    private final String path;
    private final int fd;
    private final long size;
    private final boolean readOnly;

    ShiftedImage(String path, long guestSize, boolean readOnly) {
        this.path = path;
        this.fd = Libc.open(path, (readOnly ? Libc.O_RDONLY : Libc.O_RDWR) | Libc.O_CLOEXEC, 0);
        this.size = guestSize;
        this.readOnly = readOnly;
    }

    @Override
    public int readv(long offset, long iovAddr, int iovcnt) {
        return bytes(Libc.preadv2Raw(fd, iovAddr, iovcnt, offset + HEADER, 0));
    }

    @Override
    public int writev(long offset, long iovAddr, int iovcnt, boolean fua) {
        return bytes(Libc.pwritev2Raw(fd, iovAddr, iovcnt, offset + HEADER, fua ? Libc.RWF_DSYNC : 0));
    }

    private static int bytes(long r) {
        return (int) r;
    }

    @Override
    public int flush() {
        return Libc.fdatasyncRaw(fd);
    }

    @Override
    public int discard(long offset, long length) {
        return Libc.fallocateRaw(fd, Libc.FALLOC_FL_PUNCH_HOLE | Libc.FALLOC_FL_KEEP_SIZE, offset + HEADER, length);
    }

    @Override
    public int writeZeroes(long offset, long length, boolean mayUnmap) {
        return Libc.fallocateRaw(fd, (mayUnmap ? Libc.FALLOC_FL_PUNCH_HOLE : Libc.FALLOC_FL_ZERO_RANGE) | Libc.FALLOC_FL_KEEP_SIZE,
                offset + HEADER, length);
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public int logicalBlockSize() {
        return 512;
    }

    @Override
    public int physicalBlockSize() {
        return 4096;
    }

    @Override
    public boolean readOnly() {
        return readOnly;
    }

    @Override
    public boolean isBlockDevice() {
        return false;
    }

    @Override
    public String describe() {
        return path + " (shifted test image)";
    }

    @Override
    public void close() {
        Libc.closeQuietly(fd);
    }
}
