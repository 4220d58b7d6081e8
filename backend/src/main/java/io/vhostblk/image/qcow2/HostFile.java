package io.vhostblk.image.qcow2;

import io.vhostblk.image.CacheMode;
import io.vhostblk.linux.Errno;
import io.vhostblk.linux.ErrnoException;
import io.vhostblk.linux.Libc;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * One host file of an image (the qcow2 file itself, an external data file, a raw backing file):
 * a buffered descriptor for metadata and unaligned data, and with cache mode none an O_DIRECT
 * descriptor for aligned data.
 */
final class HostFile implements AutoCloseable {
    static final int DIRECT_ALIGN = 4096;

    final String path;
    final int fd;
    final int directFd;
    final boolean readOnly;
    private volatile boolean directBroken;

    private HostFile(String path, int fd, int directFd, boolean readOnly) {
        this.path = path;
        this.fd = fd;
        this.directFd = directFd;
        this.readOnly = readOnly;
    }

    static HostFile open(String path, boolean readOnly, CacheMode cache) {
        int access = (readOnly ? Libc.O_RDONLY : Libc.O_RDWR) | Libc.O_CLOEXEC;
        int fd;
        try {
            fd = Libc.open(path, access, 0);
        } catch (ErrnoException e) {
            throw new Qcow2Exception(path + ": " + e.getMessage(), e);
        }
        int direct = -1;
        if (cache == CacheMode.NONE) {
            try {
                direct = Libc.open(path, access | Libc.O_DIRECT, 0);
            } catch (ErrnoException e) {
                if (e.errno() != Errno.EINVAL) {
                    Libc.closeQuietly(fd);
                    throw new Qcow2Exception(path + ": " + e.getMessage(), e);
                }
                // filesystem without O_DIRECT (tmpfs on old kernels): stay buffered
            }
        }
        return new HostFile(path, fd, direct, readOnly);
    }

    long length() {
        return Libc.fstat(fd).size();
    }

    /** The descriptor for data I/O of [host, host+n) from iov [off, off+n). */
    int dataFd(Iov iov, long off, long n, long host) {
        if (directFd < 0 || directBroken) {
            return fd;
        }
        if ((host & (DIRECT_ALIGN - 1)) != 0 || (n & (DIRECT_ALIGN - 1)) != 0 || !iov.aligned(off, n, DIRECT_ALIGN)) {
            return fd;
        }
        return directFd;
    }

    void readData(Iov iov, long off, long n, long host) {
        int f = dataFd(iov, off, n, host);
        try {
            iov.preadFrom(f, host, off, n);
        } catch (ErrnoException e) {
            if (f == directFd && e.errno() == Errno.EINVAL) {
                directBroken = true;
                iov.preadFrom(fd, host, off, n);
            } else {
                throw e;
            }
        }
    }

    void writeData(Iov iov, long off, long n, long host) {
        int f = dataFd(iov, off, n, host);
        try {
            iov.pwriteTo(f, host, off, n);
        } catch (ErrnoException e) {
            if (f == directFd && e.errno() == Errno.EINVAL) {
                directBroken = true;
                iov.pwriteTo(fd, host, off, n);
            } else {
                throw e;
            }
        }
    }

    /** Reads {@code n} bytes at {@code off} into {@code dst}; bytes past EOF read as zeros. */
    void read(long off, MemorySegment dst, long n) {
        long got = Libc.pread(fd, dst, n, off);
        if (got < n) {
            dst.asSlice(got, n - got).fill((byte) 0);
        }
    }

    byte[] read(long off, int n) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(Math.max(1, n));
            read(off, s, n);
            byte[] b = new byte[n];
            MemorySegment.copy(s, 0, MemorySegment.ofArray(b), 0, n);
            return b;
        }
    }

    void write(long off, MemorySegment src, long n) {
        Libc.pwrite(fd, src, n, off);
    }

    void write(long off, byte[] b) {
        write(off, b, 0, b.length);
    }

    void write(long off, byte[] b, int from, int n) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(Math.max(1, n));
            MemorySegment.copy(MemorySegment.ofArray(b), from, s, 0, n);
            Libc.pwrite(fd, s, n, off);
        }
    }

    void sync() {
        int r = Libc.fdatasyncRaw(fd);
        if (r < 0) {
            throw new ErrnoException("fdatasync", -r, path);
        }
    }

    void truncate(long len) {
        Libc.ftruncate(fd, len);
    }

    /** Deallocates [off, off+n) keeping the size; errors (no hole punching) are ignored. */
    void punchHole(long off, long n) {
        Libc.fallocateRaw(fd, Libc.FALLOC_FL_PUNCH_HOLE | Libc.FALLOC_FL_KEEP_SIZE, off, n);
    }

    @Override
    public void close() {
        if (directFd >= 0) {
            Libc.closeQuietly(directFd);
        }
        Libc.closeQuietly(fd);
    }
}
