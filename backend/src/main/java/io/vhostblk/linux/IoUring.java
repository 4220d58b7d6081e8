package io.vhostblk.linux;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * An io_uring instance driven directly through the kernel ABI (io_uring_setup/enter/register via
 * syscall(2) and mmap of the rings), no liburing. Owned by one thread.
 *
 * <p>Ordering: the SQ tail is published with a release store after the SQEs are written; the CQ
 * tail is read with an acquire load before the CQEs are read, and the CQ head is released after
 * they have been consumed.
 */
public final class IoUring implements AutoCloseable {
    public static final byte OP_NOP = 0;
    public static final byte OP_READV = 1;
    public static final byte OP_WRITEV = 2;
    public static final byte OP_FSYNC = 3;
    public static final byte OP_FALLOCATE = 17;
    public static final int FSYNC_DATASYNC = 1;

    static final int SETUP_CQSIZE = 1 << 3;
    static final int SETUP_COOP_TASKRUN = 1 << 8;
    static final int SETUP_SINGLE_ISSUER = 1 << 12;
    static final int FEAT_SINGLE_MMAP = 1;
    static final int ENTER_GETEVENTS = 1;
    static final long OFF_SQ_RING = 0L;
    static final long OFF_CQ_RING = 0x8000000L;
    static final long OFF_SQES = 0x10000000L;
    static final int REGISTER_EVENTFD = 4;
    static final int SQE_SIZE = 64;
    static final int CQE_SIZE = 16;

    private static final VarHandle INT_HANDLE = ValueLayout.JAVA_INT.varHandle();

    /** Receives completions from {@link #reap}. */
    @FunctionalInterface
    public interface CompletionHandler {
        void onCompletion(long userData, int result);
    }

    private final int ringFd;
    private final MemorySegment sqRing;
    private final MemorySegment cqRing;
    private final MemorySegment sqes;
    private final boolean singleMmap;
    private final int sqEntries;
    private final int cqEntries;
    private final int sqMask;
    private final int cqMask;
    private final long sqHeadOff;
    private final long sqTailOff;
    private final long cqHeadOff;
    private final long cqTailOff;
    private final long cqesOff;
    private int sqTail;
    private int pendingSubmit;

    /** Sets up a ring of {@code entries} SQEs with twice as many CQEs. */
    public IoUring(int entries) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(120, 8);
            // No SINGLE_ISSUER: rings are created on the control thread and used by a worker.
            int fd = setup(entries, p, SETUP_CQSIZE | SETUP_COOP_TASKRUN);
            if (fd == -Errno.EINVAL) {
                p.fill((byte) 0);
                fd = setup(entries, p, SETUP_CQSIZE);
            }
            if (fd < 0) {
                throw new ErrnoException("io_uring_setup", -fd,
                        fd == -Errno.EPERM || fd == -Errno.ENOSYS ? "(io_uring is disabled on this host; use --engine threads)" : "");
            }
            this.ringFd = fd;
            this.sqEntries = p.get(JAVA_INT, 0);
            this.cqEntries = p.get(JAVA_INT, 4);
            int features = p.get(JAVA_INT, 20);
            long sq = 40;
            long cq = 80;
            this.sqHeadOff = p.get(JAVA_INT, sq);
            this.sqTailOff = p.get(JAVA_INT, sq + 4);
            long sqMaskOff = p.get(JAVA_INT, sq + 8);
            long sqArrayOff = p.get(JAVA_INT, sq + 24);
            this.cqHeadOff = p.get(JAVA_INT, cq);
            this.cqTailOff = p.get(JAVA_INT, cq + 4);
            long cqMaskOff = p.get(JAVA_INT, cq + 8);
            this.cqesOff = p.get(JAVA_INT, cq + 20);

            long sqSize = sqArrayOff + 4L * sqEntries;
            long cqSize = cqesOff + (long) CQE_SIZE * cqEntries;
            this.singleMmap = (features & FEAT_SINGLE_MMAP) != 0;
            int prot = Libc.PROT_READ | Libc.PROT_WRITE;
            int flags = Libc.MAP_SHARED | Libc.MAP_POPULATE;
            if (singleMmap) {
                long size = Math.max(sqSize, cqSize);
                this.sqRing = Libc.mmap(size, prot, flags, fd, OFF_SQ_RING);
                this.cqRing = sqRing;
            } else {
                this.sqRing = Libc.mmap(sqSize, prot, flags, fd, OFF_SQ_RING);
                this.cqRing = Libc.mmap(cqSize, prot, flags, fd, OFF_CQ_RING);
            }
            this.sqes = Libc.mmap((long) SQE_SIZE * sqEntries, prot, flags, fd, OFF_SQES);
            this.sqMask = sqRing.get(JAVA_INT, sqMaskOff);
            this.cqMask = cqRing.get(JAVA_INT, cqMaskOff);
            // Identity SQ index array: slot i of the SQE array is always entry i.
            for (int i = 0; i < sqEntries; i++) {
                sqRing.set(JAVA_INT, sqArrayOff + 4L * i, i);
            }
            this.sqTail = (int) INT_HANDLE.getAcquire(sqRing, sqTailOff);
        }
    }

    private static int setup(int entries, MemorySegment params, int flags) {
        params.set(JAVA_INT, 0, 0);
        params.set(JAVA_INT, 4, entries * 2);
        params.set(JAVA_INT, 8, flags);
        return (int) Libc.syscallRaw(Libc.SYS_IO_URING_SETUP, entries, params.address(), 0, 0, 0, 0);
    }

    /** True when this kernel lets us create an io_uring (not disabled by sysctl or seccomp). */
    public static boolean isAvailable() {
        try (IoUring r = new IoUring(2)) {
            return r.sqEntries > 0;
        } catch (ErrnoException e) {
            return false;
        }
    }

    public int sqEntries() {
        return sqEntries;
    }

    /** Free SQE slots not yet handed to the kernel. */
    public int sqSpace() {
        int head = (int) INT_HANDLE.getAcquire(sqRing, sqHeadOff);
        return sqEntries - (sqTail - head);
    }

    private long nextSqe() {
        int head = (int) INT_HANDLE.getAcquire(sqRing, sqHeadOff);
        if (sqTail - head >= sqEntries) {
            return -1;
        }
        long off = (long) (sqTail & sqMask) * SQE_SIZE;
        // Zero the 64-byte SQE with plain stores: a slice().fill() would allocate per request.
        for (int i = 0; i < SQE_SIZE; i += 8) {
            sqes.set(JAVA_LONG, off + i, 0L);
        }
        sqTail++;
        pendingSubmit++;
        return off;
    }

    private boolean prep(byte op, int fd, long addr, int len, long offset, int opFlags, long userData) {
        long o = nextSqe();
        if (o < 0) {
            return false;
        }
        sqes.set(JAVA_BYTE, o, op);
        sqes.set(JAVA_INT, o + 4, fd);
        sqes.set(JAVA_LONG, o + 8, offset);
        sqes.set(JAVA_LONG, o + 16, addr);
        sqes.set(JAVA_INT, o + 24, len);
        sqes.set(JAVA_INT, o + 28, opFlags);
        sqes.set(JAVA_LONG, o + 32, userData);
        return true;
    }

    /** Queues a readv; returns false when the SQ is full (submit first). */
    public boolean prepReadv(int fd, long iovAddr, int iovcnt, long offset, int rwFlags, long userData) {
        return prep(OP_READV, fd, iovAddr, iovcnt, offset, rwFlags, userData);
    }

    public boolean prepWritev(int fd, long iovAddr, int iovcnt, long offset, int rwFlags, long userData) {
        return prep(OP_WRITEV, fd, iovAddr, iovcnt, offset, rwFlags, userData);
    }

    public boolean prepFsync(int fd, int fsyncFlags, long userData) {
        return prep(OP_FSYNC, fd, 0, 0, 0, fsyncFlags, userData);
    }

    /** fallocate(fd, mode, offset, len): the length travels in addr and the mode in len. */
    public boolean prepFallocate(int fd, int mode, long offset, long len, long userData) {
        return prep(OP_FALLOCATE, fd, len, mode, offset, 0, userData);
    }

    public boolean prepNop(long userData) {
        return prep(OP_NOP, -1, 0, 0, 0, 0, userData);
    }

    /** SQEs prepared but not yet submitted. */
    public int pending() {
        return pendingSubmit;
    }

    /**
     * Publishes prepared SQEs and enters the kernel, optionally waiting for {@code minComplete}
     * completions. Returns the number submitted, or -errno (EINTR/EAGAIN/EBUSY are for the caller
     * to retry after reaping).
     */
    public int submit(int minComplete) {
        INT_HANDLE.setRelease(sqRing, sqTailOff, sqTail);
        int toSubmit = pendingSubmit;
        if (toSubmit == 0 && minComplete == 0) {
            return 0;
        }
        int flags = minComplete > 0 ? ENTER_GETEVENTS : 0;
        long r = Libc.syscallRaw(Libc.SYS_IO_URING_ENTER, ringFd, toSubmit, minComplete, flags, 0, 0);
        if (r >= 0) {
            pendingSubmit -= (int) r;
        }
        return (int) r;
    }

    /** Completions waiting in the CQ. */
    public int ready() {
        int tail = (int) INT_HANDLE.getAcquire(cqRing, cqTailOff);
        int head = cqRing.get(JAVA_INT, cqHeadOff);
        return tail - head;
    }

    /** Hands every waiting completion to {@code handler}; returns how many. */
    public int reap(CompletionHandler handler) {
        int head = cqRing.get(JAVA_INT, cqHeadOff);
        int tail = (int) INT_HANDLE.getAcquire(cqRing, cqTailOff);
        int n = 0;
        while (head != tail) {
            long o = cqesOff + (long) (head & cqMask) * CQE_SIZE;
            long userData = cqRing.get(JAVA_LONG, o);
            int res = cqRing.get(JAVA_INT, o + 8);
            head++;
            n++;
            // Release the slot before running the handler so it may queue new work freely.
            INT_HANDLE.setRelease(cqRing, cqHeadOff, head);
            handler.onCompletion(userData, res);
            tail = (int) INT_HANDLE.getAcquire(cqRing, cqTailOff);
        }
        return n;
    }

    /** Has the kernel signal {@code eventFd} on every completion (IORING_REGISTER_EVENTFD). */
    public void registerEventFd(int eventFd) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment arg = a.allocate(JAVA_INT);
            arg.set(JAVA_INT, 0, eventFd);
            long r = Libc.syscallRaw(Libc.SYS_IO_URING_REGISTER, ringFd, REGISTER_EVENTFD, arg.address(), 1, 0, 0);
            if (r < 0) {
                throw new ErrnoException("io_uring_register(EVENTFD)", (int) -r);
            }
        }
    }

    @Override
    public void close() {
        Libc.munmap(sqes);
        if (!singleMmap) {
            Libc.munmap(cqRing);
        }
        Libc.munmap(sqRing);
        Libc.closeQuietly(ringFd);
    }
}
