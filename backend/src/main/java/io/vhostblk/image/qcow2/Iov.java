package io.vhostblk.image.qcow2;

import io.vhostblk.linux.Errno;
import io.vhostblk.linux.ErrnoException;
import io.vhostblk.linux.Libc;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * A request's scatter/gather list (guest buffers as raw addresses), read once from the caller's
 * native struct iovec array. Byte positions are "iov offsets": 0 is the first byte of the first
 * buffer. Not thread-safe: one instance belongs to one request.
 */
final class Iov {
    static final int IOV_MAX = 1024;

    private final long[] base;
    private final long[] len;
    private final long[] start;
    private final int cnt;
    final long total;

    private Iov(long[] base, long[] len, int cnt) {
        this.base = base;
        this.len = len;
        this.cnt = cnt;
        this.start = new long[cnt + 1];
        long t = 0;
        for (int i = 0; i < cnt; i++) {
            start[i] = t;
            t += len[i];
        }
        start[cnt] = t;
        this.total = t;
    }

    /** Reads {@code cnt} struct iovec (base, len: 16 bytes each) at {@code addr}. */
    static Iov of(long addr, int cnt) {
        if (cnt < 0) {
            throw new IllegalArgumentException("iovcnt " + cnt);
        }
        MemorySegment v = MemorySegment.ofAddress(addr).reinterpret(16L * cnt);
        long[] b = new long[cnt];
        long[] l = new long[cnt];
        for (int i = 0; i < cnt; i++) {
            b[i] = v.get(JAVA_LONG, 16L * i);
            l[i] = v.get(JAVA_LONG, 16L * i + 8);
            if (l[i] < 0) {
                throw new IllegalArgumentException("negative iov_len");
            }
        }
        return new Iov(b, l, cnt);
    }

    /** One buffer. */
    static Iov of(MemorySegment buf) {
        return new Iov(new long[]{buf.address()}, new long[]{buf.byteSize()}, 1);
    }

    private int indexOf(long off) {
        int i = Arrays.binarySearch(start, 0, cnt, off);
        if (i < 0) {
            i = -i - 2;
        }
        while (i < cnt - 1 && len[i] == 0) {
            i++;
        }
        return i;
    }

    /** Zero-fills iov bytes [off, off+n). */
    void zero(long off, long n) {
        while (n > 0) {
            int i = indexOf(off);
            long in = off - start[i];
            long k = Math.min(n, len[i] - in);
            MemorySegment.ofAddress(base[i] + in).reinterpret(k).fill((byte) 0);
            off += k;
            n -= k;
        }
    }

    /** Copies {@code n} bytes from {@code src} at {@code srcOff} into the iov at {@code off}. */
    void copyFrom(MemorySegment src, long srcOff, long off, long n) {
        while (n > 0) {
            int i = indexOf(off);
            long in = off - start[i];
            long k = Math.min(n, len[i] - in);
            MemorySegment.copy(src, srcOff, MemorySegment.ofAddress(base[i] + in).reinterpret(k), 0, k);
            off += k;
            srcOff += k;
            n -= k;
        }
    }

    /** Copies iov bytes [off, off+n) into {@code dst} at {@code dstOff}. */
    void copyTo(long off, MemorySegment dst, long dstOff, long n) {
        while (n > 0) {
            int i = indexOf(off);
            long in = off - start[i];
            long k = Math.min(n, len[i] - in);
            MemorySegment.copy(MemorySegment.ofAddress(base[i] + in).reinterpret(k), 0, dst, dstOff, k);
            off += k;
            dstOff += k;
            n -= k;
        }
    }

    /** True when every buffer piece of [off, off+n) starts and ends on {@code align}. */
    boolean aligned(long off, long n, int align) {
        long m = align - 1;
        while (n > 0) {
            int i = indexOf(off);
            long in = off - start[i];
            long k = Math.min(n, len[i] - in);
            if (((base[i] + in) & m) != 0 || (k & m) != 0) {
                return false;
            }
            off += k;
            n -= k;
        }
        return true;
    }

    /**
     * Writes native iovecs for [off, off+n) into {@code out} (at most {@link #IOV_MAX} of them);
     * returns the number of bytes they cover and puts their count in {@code cntOut[0]}.
     */
    private long fill(long off, long n, MemorySegment out, int[] cntOut) {
        int c = 0;
        long covered = 0;
        while (n > 0 && c < IOV_MAX) {
            int i = indexOf(off);
            long in = off - start[i];
            long k = Math.min(n, len[i] - in);
            out.set(JAVA_LONG, 16L * c, base[i] + in);
            out.set(JAVA_LONG, 16L * c + 8, k);
            c++;
            covered += k;
            off += k;
            n -= k;
        }
        cntOut[0] = c;
        return covered;
    }

    /**
     * Reads host bytes [host, host+n) of {@code fd} into iov [off, off+n); bytes past the end of
     * the file read as zeros.
     */
    void preadFrom(int fd, long host, long off, long n) {
        if (n <= 0) {
            return;
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(16L * Math.min(IOV_MAX, cnt), 8);
            int[] c = new int[1];
            while (n > 0) {
                fill(off, n, v, c);
                long r = Libc.preadv2Raw(fd, v.address(), c[0], host, 0);
                if (r < 0) {
                    if (r == -Errno.EINTR || r == -Errno.EAGAIN) {
                        continue;
                    }
                    throw new ErrnoException("preadv", (int) -r);
                }
                if (r == 0) {
                    zero(off, n);
                    return;
                }
                off += r;
                host += r;
                n -= r;
            }
        }
    }

    /** Writes iov [off, off+n) to host bytes [host, host+n) of {@code fd}. */
    void pwriteTo(int fd, long host, long off, long n) {
        if (n <= 0) {
            return;
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(16L * Math.min(IOV_MAX, cnt), 8);
            int[] c = new int[1];
            while (n > 0) {
                fill(off, n, v, c);
                long r = Libc.pwritev2Raw(fd, v.address(), c[0], host, 0);
                if (r < 0) {
                    if (r == -Errno.EINTR || r == -Errno.EAGAIN) {
                        continue;
                    }
                    throw new ErrnoException("pwritev", (int) -r);
                }
                off += r;
                host += r;
                n -= r;
            }
        }
    }
}
