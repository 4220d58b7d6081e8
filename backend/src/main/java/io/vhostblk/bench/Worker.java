package io.vhostblk.bench;

import io.vhostblk.blk.BlkRequest;
import io.vhostblk.frontend.BlkDriver;
import io.vhostblk.frontend.DriverQueue;
import org.HdrHistogram.Histogram;

import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.ArrayList;
import java.util.List;

/**
 * One benchmark thread driving one queue: keeps {@code iodepth} requests in flight, records
 * latencies, counts errors. Nothing is allocated per request.
 */
final class Worker implements Runnable {
    /** No completion for this long with requests in flight: the backend is stuck. */
    static final long STALL_NANOS = 30_000_000_000L;
    private static final int MAX_REPORTED = 10;

    private final int id;
    private final BlkDriver d;
    private final DriverQueue q;
    private final BenchConfig cfg;
    private final int sectorsPerBlock;
    private final long firstBlock;
    private final long blocks;
    private final long generation;

    // timing, supplied by the main thread
    long startNanos;
    long measureFromNanos;
    long endNanos;
    /** Requests this queue may submit in all (--max-ios share); MAX_VALUE: no limit. */
    long maxSubmits = Long.MAX_VALUE;
    /** Requests after which this queue's ramp ends if --ramp has not ended it (--ramp-ios share). */
    long rampSubmits = Long.MAX_VALUE;
    /** Counted down when this queue submits its first measured request (wakes the main thread). */
    java.util.concurrent.CountDownLatch rampDone;
    /** Submit time of this queue's first measured request; MAX_VALUE until then. */
    volatile long measureStartNanos = Long.MAX_VALUE;

    // per-slot request state
    private final long[] submitNanos;
    private final long[] blockOf;
    private final boolean[] isRead;
    private final boolean[] measured;

    // random and sequential position
    private long rng;
    private long seqNext;

    // results
    final Histogram latency = new Histogram(60_000_000_000L, 3);
    long ios;
    /** Requests submitted, the ramp's included. */
    long submitted;
    long readIos;
    long writeIos;
    long errors;
    long verifiedSectors;
    long mismatchedSectors;
    final List<String> problems = new ArrayList<>();
    Throwable failure;
    CpuUsage.Sample threadCpu = new CpuUsage.Sample(0, 0);
    /** Heap bytes the worker thread allocated over the whole run (setup of the loop included). */
    long allocated;

    Worker(int id, BlkDriver d, BenchConfig cfg, long firstBlock, long blocks, long seed, long generation) {
        this.id = id;
        this.d = d;
        this.q = d.queue();
        this.cfg = cfg;
        this.sectorsPerBlock = cfg.bs() / BlkRequest.SECTOR_SIZE;
        this.firstBlock = firstBlock;
        this.blocks = blocks;
        this.generation = generation;
        this.submitNanos = new long[d.slots()];
        this.blockOf = new long[d.slots()];
        this.isRead = new boolean[d.slots()];
        this.measured = new boolean[d.slots()];
        this.rng = seed | 1;
        this.seqNext = 0;
    }

    @Override
    public void run() {
        CpuUsage.Sample cpu0 = CpuUsage.thread();
        long alloc0 = allocatedBytes();
        try {
            if (cfg.verify()) {
                verify();
            } else {
                timed();
            }
        } catch (Throwable t) {
            failure = t;
        } finally {
            threadCpu = CpuUsage.thread().minus(cpu0);
            allocated = allocatedBytes() - alloc0;
        }
    }

    /** Heap bytes this thread allocated so far (-1 if the JVM cannot tell). */
    private static long allocatedBytes() {
        if (ManagementFactory.getThreadMXBean() instanceof com.sun.management.ThreadMXBean t) {
            return t.getCurrentThreadAllocatedBytes();
        }
        return -1;
    }

    private long nextRandom() {
        // xorshift64*
        long x = rng;
        x ^= x >>> 12;
        x ^= x << 25;
        x ^= x >>> 27;
        rng = x;
        return x * 0x2545F4914F6CDD1DL;
    }

    // ------------------------------------------------------------------ timed workload

    private void timed() {
        int readPct = cfg.rw().mixed ? cfg.mixReadPct() : cfg.rw().readPct();
        long now = System.nanoTime();
        int slot;
        while (submitted < maxSubmits && (slot = d.acquire()) >= 0) {
            issueTimed(slot, readPct, now);
        }
        d.publish();
        long lastProgress = now;
        while (q.inFlight() > 0) {
            int n = 0;
            int s;
            while ((s = d.poll()) >= 0) {
                n++;
                now = System.nanoTime();
                finish(s, now);
                if (now < endNanos && submitted < maxSubmits) {
                    issueTimed(s, readPct, now);
                } else {
                    d.release(s);
                }
            }
            if (n > 0) {
                d.publish();
                lastProgress = now;
                continue;
            }
            waitForCompletions(lastProgress);
        }
    }

    private void issueTimed(int slot, int readPct, long now) {
        long block;
        if (cfg.rw().random) {
            block = firstBlock + Long.remainderUnsigned(nextRandom(), blocks);
        } else {
            block = firstBlock + seqNext;
            if (++seqNext == blocks) {
                seqNext = 0;
            }
        }
        boolean read = readPct == 100 || (readPct > 0 && Long.remainderUnsigned(nextRandom(), 100) < readPct);
        boolean m = now >= measureFromNanos || submitted >= rampSubmits;
        if (m && measureStartNanos == Long.MAX_VALUE) {
            // the first measured request: a ramp ended by --ramp-ios moves the end of the run along
            measureStartNanos = now;
            if (now < measureFromNanos) {
                endNanos = now + (endNanos - measureFromNanos);
            }
            if (rampDone != null) {
                rampDone.countDown();
            }
        }
        submit(slot, block, read, now);
        measured[slot] = m;
        submitted++;
    }

    private void submit(int slot, long block, boolean read, long now) {
        blockOf[slot] = block;
        isRead[slot] = read;
        submitNanos[slot] = now;
        if (!d.submit(slot, read ? BlkRequest.T_IN : BlkRequest.T_OUT, block * sectorsPerBlock, cfg.bs())) {
            throw new IllegalStateException("queue " + id + ": ring full with " + q.inFlight() + " requests in flight");
        }
    }

    /** Accounts for a completed request: status, latency, counters. */
    private void finish(int s, long now) {
        int status = d.status(s);
        if (status != BlkRequest.S_OK) {
            errors++;
            if (problems.size() < MAX_REPORTED) {
                problems.add("queue " + id + ": " + (isRead[s] ? "read" : "write") + " of block " + blockOf[s] + " (sector "
                        + blockOf[s] * sectorsPerBlock + ") failed with status " + statusName(status));
            }
        }
        if (measured[s]) {
            latency.recordValue(Math.max(0, now - submitNanos[s]));
            ios++;
            if (isRead[s]) {
                readIos++;
            } else {
                writeIos++;
            }
        }
    }

    /**
     * Sleeps (or spins with --poll) until completions arrive: one blocking read of the call
     * eventfd per sleep. A stuck backend is detected by the main thread's watchdog
     * ({@link #checkStalled}), which wakes the worker up.
     */
    private void waitForCompletions(long lastProgress) {
        PROGRESS.setOpaque(this, lastProgress); // asleep; last completion at lastProgress
        q.awaitUsed();
        PROGRESS.setOpaque(this, 0L);
        if (stalled && !q.hasUsed()) {
            throw new IllegalStateException("queue " + id + ": no completion for " + STALL_NANOS / 1_000_000_000L + " s with "
                    + q.inFlight() + " requests in flight (" + q + ")");
        }
    }

    /** Watchdog, from the main thread: wakes the worker up if it sleeps without a completion for too long. */
    void checkStalled(long now) {
        long last = (long) PROGRESS.getOpaque(this);
        if (last != 0 && now - last > STALL_NANOS) {
            stalled = true;
            q.wakeup();
        }
    }

    private static final VarHandle PROGRESS;

    static {
        try {
            PROGRESS = MethodHandles.lookup().findVarHandle(Worker.class, "lastProgressNanos", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    @SuppressWarnings("unused") // accessed through PROGRESS
    private long lastProgressNanos;
    private volatile boolean stalled;

    static String statusName(int status) {
        return switch (status) {
            case BlkRequest.S_OK -> "OK";
            case BlkRequest.S_IOERR -> "IOERR";
            case BlkRequest.S_UNSUPP -> "UNSUPP";
            case BlkDriver.STATUS_NOT_WRITTEN -> "not written by the device";
            default -> String.valueOf(status);
        };
    }

    // ------------------------------------------------------------------ verify

    private void verify() {
        pass(false);
        if (errors == 0) {
            int st = d.flush();
            if (st != BlkRequest.S_OK) {
                errors++;
                problems.add("queue " + id + ": FLUSH failed with status " + statusName(st));
            }
        }
        pass(true);
    }

    /** Writes (stamped) or reads and checks blocks [firstBlock, firstBlock + blocks) in order. */
    private void pass(boolean read) {
        long next = 0;
        long now = System.nanoTime();
        int slot;
        while (next < blocks && (slot = d.acquire()) >= 0) {
            issueVerify(slot, firstBlock + next++, read, now);
        }
        d.publish();
        long lastProgress = now;
        while (q.inFlight() > 0) {
            int n = 0;
            int s;
            while ((s = d.poll()) >= 0) {
                n++;
                now = System.nanoTime();
                finish(s, now);
                if (read && d.status(s) == BlkRequest.S_OK) {
                    check(s);
                }
                if (next < blocks) {
                    issueVerify(s, firstBlock + next++, read, now);
                } else {
                    d.release(s);
                }
            }
            if (n > 0) {
                d.publish();
                lastProgress = now;
                continue;
            }
            waitForCompletions(lastProgress);
        }
    }

    private void issueVerify(int slot, long block, boolean read, long now) {
        MemorySegment buf = d.data(slot);
        if (read) {
            buf.asSlice(0, cfg.bs()).fill((byte) 0);
        } else {
            Stamp.fill(buf, cfg.bs(), block * sectorsPerBlock, generation);
        }
        submit(slot, block, read, now);
        measured[slot] = true;
        submitted++;
    }

    private void check(int s) {
        MemorySegment buf = d.data(s);
        long firstSector = blockOf[s] * sectorsPerBlock;
        int from = 0;
        while (true) {
            int bad = Stamp.firstBad(buf, cfg.bs(), firstSector, generation, from);
            if (bad < 0) {
                break;
            }
            mismatchedSectors++;
            if (problems.size() < MAX_REPORTED) {
                problems.add("queue " + id + ": verify mismatch at " + Stamp.describe(buf, bad, firstSector + bad, generation));
            }
            from = bad + 1;
        }
        verifiedSectors += sectorsPerBlock;
    }
}
