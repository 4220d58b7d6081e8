package io.vhostblk.image.qcow2;

import io.vhostblk.image.CacheMode;

/** A raw file as a backing image (read-only). */
final class RawBacking implements BackingSource {
    private final HostFile file;
    private final long size;
    private final ImageLock lock;

    RawBacking(String path, boolean lock) {
        this.file = HostFile.open(path, true, CacheMode.WRITEBACK);
        try {
            this.lock = lock ? ImageLock.acquire(file.fd, path, true) : null;
            this.size = file.length();
        } catch (RuntimeException e) {
            file.close();
            throw e;
        }
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public void readInto(long off, Iov iov, long iovOff, long n) {
        file.readData(iov, iovOff, n, off);
    }

    int fd() {
        return file.fd;
    }

    @Override
    public String describe() {
        return file.path;
    }

    @Override
    public void close() {
        if (lock != null) {
            lock.release();
        }
        file.close();
    }
}
