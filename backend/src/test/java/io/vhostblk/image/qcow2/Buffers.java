package io.vhostblk.image.qcow2;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Random;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

/** Native guest-like buffers and iovec arrays for calling the image API. */
final class Buffers {
    private Buffers() {
    }

    /**
     * Builds an iovec array over {@code buf} split into up to {@code pieces} random-sized pieces
     * (multiples of {@code unit}); returns the iovec array segment (16 bytes per entry).
     */
    static MemorySegment iov(Arena a, MemorySegment buf, int pieces, int unit, Random rnd) {
        long len = buf.byteSize();
        int n = (int) Math.max(1, Math.min(pieces, len / unit));
        long[] cuts = new long[n + 1];
        cuts[n] = len;
        for (int i = 1; i < n; i++) {
            cuts[i] = Math.max(cuts[i - 1], Math.min(len, (long) (rnd.nextDouble() * (len / unit)) * unit));
        }
        java.util.Arrays.sort(cuts, 1, n);
        MemorySegment v = a.allocate(16L * n, 8);
        int k = 0;
        for (int i = 0; i < n; i++) {
            long l = cuts[i + 1] - cuts[i];
            if (l == 0 && n > 1) {
                continue;
            }
            v.set(JAVA_LONG, 16L * k, buf.address() + cuts[i]);
            v.set(JAVA_LONG, 16L * k + 8, l);
            k++;
        }
        return v.asSlice(0, 16L * Math.max(k, 1));
    }

    static MemorySegment single(Arena a, MemorySegment buf) {
        MemorySegment v = a.allocate(16, 8);
        v.set(JAVA_LONG, 0, buf.address());
        v.set(JAVA_LONG, 8, buf.byteSize());
        return v;
    }

    static int count(MemorySegment iov) {
        return (int) (iov.byteSize() / 16);
    }

    /** Reads the whole image through the library in random chunks and iovec splits. */
    static byte[] readAll(Qcow2Image img, Random rnd) {
        long size = img.size();
        byte[] out = new byte[(int) size];
        try (Arena a = Arena.ofConfined()) {
            long off = 0;
            while (off < size) {
                long n = Math.min(size - off, 512L * (1 + rnd.nextInt(600)));
                MemorySegment buf = a.allocate(n, 4096);
                MemorySegment v = iov(a, buf, 1 + rnd.nextInt(5), 512, rnd);
                int r = img.readv(off, v.address(), count(v));
                if (r != n) {
                    throw new AssertionError("readv at " + off + " returned " + r);
                }
                MemorySegment.copy(buf, 0, MemorySegment.ofArray(out), off, n);
                off += n;
            }
        }
        return out;
    }

    static int write(Qcow2Image img, long off, byte[] data, Random rnd, boolean fua) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(Math.max(1, data.length), 4096);
            MemorySegment.copy(MemorySegment.ofArray(data), 0, buf, 0, data.length);
            MemorySegment v = iov(a, buf.asSlice(0, data.length), 1 + rnd.nextInt(4), 512, rnd);
            int r = img.writev(off, v.address(), count(v), fua);
            // MappedImage contract: the bytes written; callers here compare with 0 for success.
            return r == data.length ? 0 : r;
        }
    }

    static byte[] read(Qcow2Image img, long off, int n) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(n, 4096);
            MemorySegment v = single(a, buf);
            int r = img.readv(off, v.address(), 1);
            if (r != n) {
                throw new AssertionError("readv at " + off + " returned " + r);
            }
            return buf.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
        }
    }
}
