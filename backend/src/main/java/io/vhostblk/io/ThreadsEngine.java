package io.vhostblk.io;

import io.vhostblk.image.MappedImage;
import io.vhostblk.linux.EventFd;
import io.vhostblk.linux.IoUring;
import io.vhostblk.linux.Libc;
import org.agrona.concurrent.ManyToManyConcurrentArrayQueue;
import org.agrona.concurrent.ManyToOneConcurrentArrayQueue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Portable engine for hosts where io_uring is disabled: a few I/O threads run blocking
 * preadv2/pwritev2/fdatasync/fallocate straight on the guest-memory iovecs. Constructed with a
 * {@link MappedImage} (qcow2), the same threads call the image's guest-offset methods instead,
 * and the fd arguments are ignored.
 *
 * <p>Hand-off is garbage-free: operations are preallocated {@link Op} objects travelling
 * through Agrona's lock-free array queues; idle I/O threads sleep in a blocking read of a
 * semaphore-mode eventfd the worker posts to, and completions wake the worker through a second
 * eventfd. Nothing here is shared with other workers.
 */
public final class ThreadsEngine implements IoEngine {
    static final int EFD_SEMAPHORE = 1;
    private static final int READ = 0;
    private static final int WRITE = 1;
    private static final int SYNC = 2;
    private static final int FALLOC = 3;
    private static final int DISCARD = 4;
    private static final int ZEROES = 5;

    static final class Op {
        int kind;
        int fd;
        long iovAddr;
        int iovcnt;
        long offset;
        long len;
        int flags;
        long token;
        int result;
    }

    private final Op[] free;
    private int freeTop;
    private int created;
    private final ManyToManyConcurrentArrayQueue<Op> submissions;
    private final ManyToOneConcurrentArrayQueue<Op> completions;
    private final Op[] staged;
    private int stagedCount;
    private final int wakeFd;
    private final int doneFd;
    private final Thread[] threads;
    private final MappedImage image;
    private volatile boolean stopping;

    public ThreadsEngine(int capacity, int ioThreads, String name) {
        this(capacity, ioThreads, name, null);
    }

    /** With {@code image} non-null the engine serves that image's guest offsets (an "image engine"). */
    public ThreadsEngine(int capacity, int ioThreads, String name, MappedImage image) {
        this.image = image;
        int cap = Math.max(8, capacity);
        // Ops are created on first need (a connection rarely uses every ring entry) and then
        // recycled, so the steady state allocates nothing.
        this.free = new Op[cap];
        this.freeTop = 0;
        this.staged = new Op[cap];
        this.submissions = new ManyToManyConcurrentArrayQueue<>(cap);
        this.completions = new ManyToOneConcurrentArrayQueue<>(cap);
        this.wakeFd = Libc.eventfd(0, EFD_SEMAPHORE | Libc.EFD_CLOEXEC);
        this.doneFd = EventFd.create();
        this.threads = new Thread[ioThreads];
        for (int i = 0; i < ioThreads; i++) {
            threads[i] = Thread.ofPlatform().daemon().name(name + "-io-" + i).unstarted(this::run);
            threads[i].start();
        }
    }

    private boolean stage(int kind, int fd, long iovAddr, int iovcnt, long offset, long len, int flags, long token) {
        Op op;
        if (freeTop > 0) {
            op = free[--freeTop];
        } else if (created < free.length) {
            op = new Op();
            created++;
        } else {
            return false;
        }
        op.kind = kind;
        op.fd = fd;
        op.iovAddr = iovAddr;
        op.iovcnt = iovcnt;
        op.offset = offset;
        op.len = len;
        op.flags = flags;
        op.token = token;
        staged[stagedCount++] = op;
        return true;
    }

    @Override
    public boolean readv(int fd, long iovAddr, int iovcnt, long offset, long token) {
        return stage(READ, fd, iovAddr, iovcnt, offset, 0, 0, token);
    }

    @Override
    public boolean writev(int fd, long iovAddr, int iovcnt, long offset, boolean dsync, long token) {
        return stage(WRITE, fd, iovAddr, iovcnt, offset, 0, dsync ? Libc.RWF_DSYNC : 0, token);
    }

    @Override
    public boolean fdatasync(int fd, long token) {
        return stage(SYNC, fd, 0, 0, 0, 0, 0, token);
    }

    @Override
    public boolean fallocate(int fd, int mode, long offset, long len, long token) {
        return stage(FALLOC, fd, 0, 0, offset, len, mode, token);
    }

    @Override
    public boolean discard(int fd, long offset, long len, long token) {
        return stage(DISCARD, fd, 0, 0, offset, len, 0, token);
    }

    @Override
    public boolean writeZeroes(int fd, long offset, long len, boolean unmap, long token) {
        return stage(ZEROES, fd, 0, 0, offset, len, unmap ? 1 : 0, token);
    }

    @Override
    public void submit() {
        if (stagedCount == 0) {
            return;
        }
        for (int i = 0; i < stagedCount; i++) {
            // The queue holds every op there is, but Agrona's array queues can refuse an offer for
            // an instant while a consumer is still releasing the slot it took: retry, never drop.
            while (!submissions.offer(staged[i])) {
                Thread.onSpinWait();
            }
            staged[i] = null;
        }
        post(wakeFd, stagedCount);
        stagedCount = 0;
    }

    private static final ThreadLocal<MemorySegment> POST_BUF = ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(8));

    private static void post(int fd, long n) {
        MemorySegment b = POST_BUF.get();
        b.set(java.lang.foreign.ValueLayout.JAVA_LONG, 0, n);
        Libc.writeRaw(fd, b, 8);
    }

    @Override
    public int reap(IoUring.CompletionHandler handler) {
        int n = 0;
        Op op;
        while ((op = completions.poll()) != null) {
            long token = op.token;
            int res = op.result;
            free[freeTop++] = op;
            n++;
            handler.onCompletion(token, res);
        }
        return n;
    }

    @Override
    public int completionFd() {
        return doneFd;
    }

    @Override
    public String name() {
        return image == null ? "threads" : "image";
    }

    private void run() {
        while (true) {
            EventFd.drain(wakeFd); // blocks until an op was posted (semaphore: takes one)
            if (stopping) {
                return;
            }
            Op op = submissions.poll();
            if (op == null) {
                continue;
            }
            op.result = execute(op);
            while (!completions.offer(op)) {
                Thread.onSpinWait();
            }
            EventFd.signal(doneFd);
        }
    }

    private int execute(Op op) {
        if (image != null) {
            return switch (op.kind) {
                case READ -> image.readv(op.offset, op.iovAddr, op.iovcnt);
                case WRITE -> image.writev(op.offset, op.iovAddr, op.iovcnt, op.flags != 0);
                case SYNC -> image.flush();
                case DISCARD -> image.discard(op.offset, op.len);
                case ZEROES -> image.writeZeroes(op.offset, op.len, op.flags != 0);
                default -> -io.vhostblk.linux.Errno.EOPNOTSUPP;
            };
        }
        long r = switch (op.kind) {
            case READ -> Libc.preadv2Raw(op.fd, op.iovAddr, op.iovcnt, op.offset, 0);
            case WRITE -> Libc.pwritev2Raw(op.fd, op.iovAddr, op.iovcnt, op.offset, op.flags);
            case SYNC -> Libc.fdatasyncRaw(op.fd);
            case DISCARD -> Libc.fallocateRaw(op.fd, Libc.FALLOC_FL_PUNCH_HOLE | Libc.FALLOC_FL_KEEP_SIZE, op.offset, op.len);
            case ZEROES -> Libc.fallocateRaw(op.fd, op.flags != 0 ? Libc.FALLOC_FL_PUNCH_HOLE | Libc.FALLOC_FL_KEEP_SIZE
                    : Libc.FALLOC_FL_ZERO_RANGE | Libc.FALLOC_FL_KEEP_SIZE, op.offset, op.len);
            default -> Libc.fallocateRaw(op.fd, op.flags, op.offset, op.len);
        };
        return (int) Math.max(Integer.MIN_VALUE, Math.min(Integer.MAX_VALUE, r));
    }

    @Override
    public void close() {
        stopping = true;
        post(wakeFd, threads.length);
        for (Thread t : threads) {
            try {
                t.join(5000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        Libc.closeQuietly(wakeFd);
        Libc.closeQuietly(doneFd);
    }
}
