package io.vhostblk.virtq;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.invoke.VarHandle;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.IntConsumer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The ordered stores of {@link SplitQueue} seen from a second thread playing the driver, in the
 * style of Agrona's concurrency tests: every iteration checks the invariant the ordering exists
 * for. Time-bounded so the suite stays fast on two shared cores.
 */
class SplitQueueOrderingTest {
    static final long BUDGET_NS = 1_000_000_000L;
    /** Fewest rounds a test accepts as evidence (without the fences, losses show within ~100). */
    static final int MIN_ROUNDS = 1000;

    MockGuestMemory mem;

    @BeforeEach
    void setUp() {
        mem = MockGuestMemory.memfd(0, 0x20000);
    }

    @AfterEach
    void tearDown() {
        mem.close();
    }

    /**
     * Device publishes elements (id = sequence number, len = its complement) in random batches;
     * the driver thread reads used->idx with acquire and checks that every element up to it is
     * already the one of that sequence number. The device never runs more than a ring ahead of
     * what the driver has checked, exactly as a real driver recycles used slots.
     */
    @Test
    void usedElementsAreVisibleBeforeUsedIdx() throws Exception {
        int size = 64;
        MockSplitQueue mq = MockSplitQueue.at(mem, size, 0);
        SplitQueue q = mq.create(false, false, 0);
        AtomicLong checked = new AtomicLong();
        AtomicReference<String> failure = new AtomicReference<>();
        AtomicInteger stop = new AtomicInteger();
        long total = 400_000;

        Thread driver = Thread.ofPlatform().name("driver").start(() -> {
            long seen = 0;
            long deadline = System.nanoTime() + 2 * BUDGET_NS;
            while (seen < total && stop.get() == 0 && System.nanoTime() < deadline) {
                int idx = mq.usedIdx(); // acquire
                long upTo = seen + ((idx - seen) & 0xFFFF);
                for (; seen < upTo; seen++) {
                    int id = mq.usedId((int) seen);
                    int len = mq.usedLen((int) seen);
                    if (id != (int) seen || len != ~(int) seen) {
                        failure.compareAndSet(null, "used->idx " + idx + " published but element " + seen
                                + " reads id=" + id + " len=" + len);
                        return;
                    }
                }
                checked.set(seen);
            }
        });

        SplittableRandom rnd = new SplittableRandom(7);
        long produced = 0;
        long deadline = System.nanoTime() + BUDGET_NS;
        while (produced < total && failure.get() == null && System.nanoTime() < deadline) {
            int batch = 1 + rnd.nextInt(8);
            for (int b = 0; b < batch && produced < total; b++) {
                int spins = 0;
                while (produced - checked.get() >= size && failure.get() == null && System.nanoTime() < deadline) {
                    if (++spins > 1000) {
                        Thread.yield();
                    } else {
                        Thread.onSpinWait();
                    }
                }
                q.addUsed((int) produced, ~(int) produced);
                produced++;
            }
            q.publishUsed();
        }
        long finalProduced = produced;
        // Let the driver catch up with what was published.
        long wait = System.nanoTime() + BUDGET_NS;
        while (checked.get() < finalProduced && failure.get() == null && System.nanoTime() < wait) {
            Thread.yield();
        }
        stop.set(1);
        driver.join();
        assertNull(failure.get());
        assertEquals(finalProduced, checked.get(), "driver saw every published element");
        assertTrue(finalProduced > 10_000, "enough iterations ran: " + finalProduced);
    }

    /**
     * Lost-wakeup litmus test (store buffering) for {@link SplitQueue#enableNotification} with
     * EVENT_IDX: the device writes avail_event then re-reads avail->idx; the driver writes
     * avail->idx then reads avail_event. With the full fences in place at least one of them
     * must see the other's store: either the device finds the new entry, or the driver kicks.
     */
    @Test
    void enableNotificationCannotLoseAKick() throws Exception {
        int size = 256;
        MockSplitQueue mq = MockSplitQueue.at(mem, size, 0);
        SplitQueue q = mq.create(true, false, 0);
        boolean[] deviceSaw = new boolean[1];
        boolean[] driverKicked = new boolean[1];
        int[] lost = new int[1];
        int rounds = runRounds(30_000,
                r -> deviceSaw[0] = q.enableNotification(),
                r -> {
                    int old = mq.availIdx();
                    mq.publish(r % size);     // entry, then release store of avail->idx
                    VarHandle.fullFence();    // the driver's barrier before reading avail_event
                    driverKicked[0] = SplitRing.needEvent(mq.availEvent(), (old + 1) & 0xFFFF, old);
                },
                r -> {
                    if (!deviceSaw[0] && !driverKicked[0]) {
                        lost[0]++;
                    }
                    while (q.pending() > 0) {
                        q.popHead();
                    }
                });
        assertEquals(0, lost[0], "kicks lost in " + rounds + " rounds");
        assertTrue(rounds >= MIN_ROUNDS, "enough rounds ran: " + rounds);
    }

    /**
     * The mirror image for interrupts: the device publishes used->idx then reads used_event
     * (needsNotification); the driver, about to sleep, writes used_event = what it has seen then
     * re-reads used->idx. Either the driver sees the new element or the device interrupts.
     */
    @Test
    void publishThenNeedsNotificationCannotLoseAnInterrupt() throws Exception {
        int size = 256;
        MockSplitQueue mq = MockSplitQueue.at(mem, size, 0);
        SplitQueue q = mq.create(true, false, 0);
        q.addUsed(0, 0);
        q.publishUsed();
        q.needsNotification(); // the first one is unconditional; start from a valid state
        boolean[] notified = new boolean[1];
        boolean[] driverSaw = new boolean[1];
        int[] lost = new int[1];
        int rounds = runRounds(30_000,
                r -> {
                    q.addUsed(r, 1);
                    q.publishUsed();
                    notified[0] = q.needsNotification();
                },
                r -> {
                    int seen = (r + 1) & 0xFFFF;   // elements 0..r-1 plus the initial one were consumed
                    mq.setUsedEvent(seen);
                    VarHandle.fullFence();
                    driverSaw[0] = mq.usedIdx() != seen;
                },
                r -> {
                    if (!notified[0] && !driverSaw[0]) {
                        lost[0]++;
                    }
                });
        assertEquals(0, lost[0], "interrupts lost in " + rounds + " rounds");
        assertTrue(rounds >= MIN_ROUNDS, "enough rounds ran: " + rounds);
    }

    /**
     * Runs {@code device} on this thread and {@code driver} on another, released together each
     * round; {@code check} runs on this thread after both finished. Returns the rounds run.
     */
    static int runRounds(int max, IntConsumer device, IntConsumer driver, IntConsumer check) throws InterruptedException {
        AtomicInteger go = new AtomicInteger(-1);
        AtomicInteger done = new AtomicInteger(-1);
        AtomicInteger quit = new AtomicInteger();
        Thread t = Thread.ofPlatform().name("driver").start(() -> {
            for (int r = 0; ; r++) {
                int spins = 0;
                while (go.get() < r) {
                    if (quit.get() != 0) {
                        return;
                    }
                    if (++spins > 10_000) {
                        Thread.yield();
                    } else {
                        Thread.onSpinWait();
                    }
                }
                for (int j = (r * 7) & 15; j > 0; j--) {
                    Thread.onSpinWait();
                }
                driver.accept(r);
                done.set(r);
            }
        });
        SplittableRandom rnd = new SplittableRandom(3);
        // Round-trips are slow on a saturated 2-core host: allow up to 5 budgets to reach MIN_ROUNDS.
        long start = System.nanoTime();
        long deadline = start + BUDGET_NS;
        int r = 0;
        try {
            for (; r < max && (System.nanoTime() < deadline
                    || (r < MIN_ROUNDS && System.nanoTime() < start + 5 * BUDGET_NS)); r++) {
                go.set(r);
                // Jitter on both sides so that, whatever the latency of the hand-off, the two
                // critical store-then-load sequences overlap in time often enough. Without the
                // fences in SplitQueue this finds lost wakeups in tens to hundreds of rounds.
                for (int j = rnd.nextInt(128); j > 0; j--) {
                    Thread.onSpinWait();
                }
                device.accept(r);
                int spins = 0;
                while (done.get() < r) {
                    if (++spins > 10_000) {
                        Thread.yield();
                    } else {
                        Thread.onSpinWait();
                    }
                }
                check.accept(r);
            }
        } finally {
            quit.set(1);
            t.join();
        }
        return r;
    }
}
