package io.vhostblk.image.qcow2;

import java.io.PrintStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Random;

/**
 * Child process of {@link CrashTest}: performs a deterministic sequence of operations on an
 * image and prints "F k" after each completed flush (k = operations done before it) until it is
 * killed.
 */
public final class CrashWorker {
    static final int WRITE = 0;
    static final int ZERO = 1;
    static final int DISCARD = 2;
    static final int FLUSH = 3;

    record Op(int type, long off, int len, long dataSeed) {
    }

    /** Operation {@code i} of the sequence for {@code seed}. */
    static Op op(long seed, int i, long size, int cs) {
        Random r = new Random(seed * 1_000_003L + i);
        int t = r.nextInt(20);
        int type = t < 13 ? WRITE : t < 15 ? ZERO : t < 17 ? DISCARD : FLUSH;
        long off = r.nextLong(size / 512) * 512;
        if (r.nextInt(3) == 0) {
            off = off / cs * cs;
        }
        int len = 512 * (1 + r.nextInt(Math.max(1, 3 * cs / 512)));
        len = (int) Math.min(len, size - off);
        return new Op(type, off, len, r.nextLong());
    }

    static byte[] data(Op op) {
        byte[] d = new byte[op.len()];
        new Random(op.dataSeed()).nextBytes(d);
        return d;
    }

    public static void main(String[] args) throws Exception {
        String path = args[0];
        long seed = Long.parseLong(args[1]);
        PrintStream out = new PrintStream(System.out, true);
        if (args.length > 2 && !args[2].isEmpty()) {
            // die right after the Nth metadata write, as abruptly as SIGKILL
            java.util.concurrent.atomic.AtomicInteger left = new java.util.concurrent.atomic.AtomicInteger(Integer.parseInt(args[2]));
            Qcow2Image.metadataWriteHook = () -> {
                if (left.decrementAndGet() == 0) {
                    Runtime.getRuntime().halt(9);
                }
            };
        }
        try (Qcow2Image img = Qcow2Image.open(path, false, Options.defaults().withCacheSizes(64 << 10, 32 << 10));
             Arena a = Arena.ofConfined()) {
            long size = img.size();
            int cs = img.clusterSize();
            MemorySegment buf = a.allocate(4L * cs + 4096, 4096);
            MemorySegment iov = a.allocate(16, 8);
            out.println("READY");
            for (int i = 0; ; i++) {
                Op op = op(seed, i, size, cs);
                int r = switch (op.type()) {
                    case WRITE -> {
                        byte[] d = data(op);
                        MemorySegment.copy(MemorySegment.ofArray(d), 0, buf, 0, d.length);
                        iov.set(java.lang.foreign.ValueLayout.JAVA_LONG, 0, buf.address());
                        iov.set(java.lang.foreign.ValueLayout.JAVA_LONG, 8, d.length);
                        int w = img.writev(op.off(), iov.address(), 1, false);
                        yield w == d.length ? 0 : w;
                    }
                    case ZERO -> img.writeZeroes(op.off(), op.len(), (i & 1) == 0);
                    case DISCARD -> img.discard(op.off(), op.len());
                    default -> img.flush();
                };
                if (r != 0) {
                    out.println("ERROR " + i + " " + r);
                    System.exit(2);
                }
                if (op.type() == FLUSH) {
                    out.println("F " + (i + 1));
                }
            }
        }
    }
}
