package io.vhostblk.image;

import io.vhostblk.linux.BlockDevice;
import io.vhostblk.linux.Errno;
import io.vhostblk.linux.ErrnoException;
import io.vhostblk.linux.Libc;

/** A raw image: a regular file or a block device (device-mapper nodes, LVM, loop, NVMe...). */
public final class RawImage implements BlockImage {
    private final String path;
    private final int directFd;
    private final int bufferedFd;
    private final boolean direct;
    private final boolean readOnly;
    private final boolean blockDevice;
    private final long size;
    private final int logicalBlockSize;
    private final int physicalBlockSize;

    private RawImage(String path, int directFd, int bufferedFd, boolean direct, boolean readOnly, boolean blockDevice,
                     long size, int lbs, int pbs) {
        this.path = path;
        this.directFd = directFd;
        this.bufferedFd = bufferedFd;
        this.direct = direct;
        this.readOnly = readOnly;
        this.blockDevice = blockDevice;
        this.size = size;
        this.logicalBlockSize = lbs;
        this.physicalBlockSize = pbs;
    }

    /**
     * Opens {@code path}. Errors are operator-readable: a missing file, a directory, a file whose
     * filesystem refuses O_DIRECT with {@code --cache none}.
     */
    public static RawImage open(String path, boolean readOnly, CacheMode cache) {
        int access = readOnly ? Libc.O_RDONLY : Libc.O_RDWR;
        int buffered = Libc.open(path, access | Libc.O_CLOEXEC, 0);
        try {
            Libc.Stat st = Libc.fstat(buffered);
            if (!st.isRegularFile() && !st.isBlockDevice()) {
                throw new IllegalArgumentException(path + " is neither a regular file nor a block device");
            }
            boolean blk = st.isBlockDevice();
            long size = blk ? BlockDevice.size(buffered) : st.size();
            int lbs = blk ? BlockDevice.logicalBlockSize(buffered) : 512;
            int pbs = blk ? BlockDevice.physicalBlockSize(buffered) : (int) Math.max(512, Math.min(st.blksize(), 4096));
            int directFd = buffered;
            boolean direct = cache == CacheMode.NONE;
            if (direct) {
                try {
                    directFd = Libc.open(path, access | Libc.O_CLOEXEC | Libc.O_DIRECT, 0);
                } catch (ErrnoException e) {
                    if (e.errno() == Errno.EINVAL) {
                        throw new IllegalArgumentException(path + ": the filesystem does not support O_DIRECT; use --cache writeback");
                    }
                    throw e;
                }
            }
            if (size < 512) {
                throw new IllegalArgumentException(path + " is smaller than one 512-byte sector");
            }
            return new RawImage(path, directFd, buffered, direct, readOnly, blk, size, lbs, pbs);
        } catch (RuntimeException e) {
            Libc.closeQuietly(buffered);
            throw e;
        }
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public int logicalBlockSize() {
        return logicalBlockSize;
    }

    @Override
    public int physicalBlockSize() {
        return physicalBlockSize;
    }

    @Override
    public boolean readOnly() {
        return readOnly;
    }

    @Override
    public boolean isBlockDevice() {
        return blockDevice;
    }

    @Override
    public boolean direct() {
        return direct;
    }

    @Override
    public int dataFd(boolean aligned) {
        return aligned ? directFd : bufferedFd;
    }

    @Override
    public String describe() {
        return path + " (raw " + (blockDevice ? "block device" : "file") + ", " + size + " bytes"
                + (readOnly ? ", read-only" : "") + (direct ? ", O_DIRECT" : "") + ")";
    }

    @Override
    public void close() {
        if (directFd != bufferedFd) {
            Libc.closeQuietly(directFd);
        }
        Libc.closeQuietly(bufferedFd);
    }
}
