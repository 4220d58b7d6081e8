package io.vhostblk.frontend;

import io.vhostblk.linux.EventFd;
import io.vhostblk.virtq.SplitRing;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * DriverQueue against a tiny device living in the same process and memory: it reads the avail
 * ring and descriptor chains (direct and indirect) and writes the used ring like a backend would,
 * so the ring arithmetic, including 16-bit index wrap-around, is tested without one.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class DriverQueueTest {
    private static final VarHandle U16 = JAVA_SHORT.varHandle();

    private GuestMemory mem;
    private DriverQueue q;

    @AfterEach
    void close() {
        if (q != null) {
            q.close();
        }
        if (mem != null) {
            mem.close();
        }
    }

    private DriverQueue queue(DriverQueue.Options o) {
        mem = GuestMemory.create(1 << 20, 1 << 20);
        q = new DriverQueue(mem, 0, o);
        return q;
    }

    record Seg(long gpa, int len, boolean write) {
    }

    /** The device half: pops chains, completes them, decides about notifications (virtio 2.7). */
    static final class Device {
        final DriverQueue q;
        final GuestMemory mem;
        final MemorySegment desc;
        final MemorySegment avail;
        final MemorySegment used;
        final int size;
        final boolean eventIdx;
        int lastAvail;
        int usedIdx;
        int signalledUsed;

        Device(DriverQueue q) {
            this.q = q;
            this.mem = q.memory();
            this.desc = q.descTable();
            this.avail = q.availRing();
            this.used = q.usedRing();
            this.size = q.size();
            this.eventIdx = q.eventIdx();
        }

        int availIdx() {
            return (short) U16.getAcquire(avail, (long) SplitRing.AVAIL_IDX) & 0xFFFF;
        }

        /** Next chain or null; records avail_event = new last_avail (as libvhost-user does). */
        int[] popHead() {
            if (lastAvail == availIdx()) {
                return null;
            }
            int head = avail.get(JAVA_SHORT, SplitRing.AVAIL_RING + 2L * (lastAvail % size)) & 0xFFFF;
            lastAvail = (lastAvail + 1) & 0xFFFF;
            if (eventIdx) {
                used.set(JAVA_SHORT, SplitRing.availEventOffset(size), (short) lastAvail);
                VarHandle.fullFence();
            }
            return new int[] {head};
        }

        List<Seg> chain(int head) {
            List<Seg> out = new ArrayList<>();
            MemorySegment table = desc;
            int i = head;
            int limit = size;
            while (true) {
                long o = (long) i * 16;
                long addr = table.get(JAVA_LONG, o);
                int len = table.get(JAVA_INT, o + 8);
                short flags = table.get(JAVA_SHORT, o + 12);
                int next = table.get(JAVA_SHORT, o + 14) & 0xFFFF;
                if ((flags & SplitRing.F_INDIRECT) != 0) {
                    assertTrue(table == desc, "nested indirect");
                    assertEquals(0, flags & SplitRing.F_NEXT, "INDIRECT with NEXT");
                    assertEquals(0, len % 16);
                    table = mem.hostView(addr, len);
                    limit = len / 16;
                    i = 0;
                    continue;
                }
                out.add(new Seg(addr, len, (flags & SplitRing.F_WRITE) != 0));
                if ((flags & SplitRing.F_NEXT) == 0) {
                    return out;
                }
                assertTrue(next < limit, "next " + next + " out of table");
                assertTrue(out.size() <= limit, "loop");
                i = next;
            }
        }

        void complete(int head, int len) {
            long e = SplitRing.USED_RING + 8L * (usedIdx % size);
            used.set(JAVA_INT, e, head);
            used.set(JAVA_INT, e + 4, len);
            usedIdx = (usedIdx + 1) & 0xFFFF;
            U16.setRelease(used, (long) SplitRing.USED_IDX, (short) usedIdx);
        }

        /** vring_notify of libvhost-user: should the device signal the call eventfd now? */
        boolean shouldNotify() {
            VarHandle.fullFence();
            if (!eventIdx) {
                return (avail.get(JAVA_SHORT, SplitRing.AVAIL_FLAGS) & SplitRing.AVAIL_F_NO_INTERRUPT) == 0;
            }
            int old = signalledUsed;
            signalledUsed = usedIdx;
            int usedEvent = avail.get(JAVA_SHORT, SplitRing.usedEventOffset(size)) & 0xFFFF;
            return SplitRing.needEvent(usedEvent, usedIdx, old);
        }

        void notifyIfNeeded() {
            if (shouldNotify()) {
                EventFd.signal(q.callFd());
            }
        }

        long kicksReceived() {
            long n = EventFd.drain(q.kickFd());
            return Math.max(0, n);
        }
    }

    @ParameterizedTest(name = "size={0} eventIdx={1} indirect={2}")
    @CsvSource({"8,false,false", "8,true,true", "4,true,false", "16,false,true", "1,false,false", "2,true,true"})
    void chainsRoundTripThroughTheDeviceAcrossIndexWrapAround(int size, boolean eventIdx, boolean indirect) {
        queue(DriverQueue.Options.of(size).withEventIdx(eventIdx).withIndirect(indirect ? 6 : 0));
        Device dev = new Device(q);
        SplittableRandom rnd = new SplittableRandom(size * 31L + (eventIdx ? 1 : 0));
        long buf = mem.allocate(64 * 1024, 4096);
        List<List<Seg>> expected = new ArrayList<>();
        for (int i = 0; i < 1024; i++) {
            expected.add(null);
        }
        int total = 140_000; // more than two trips around the 16-bit index space
        int submitted = 0;
        int reaped = 0;
        int publishes = 0;
        int nextToken = 0;
        int[] tokenOfHead = new int[size];
        while (reaped < total) {
            // driver: add chains until the ring is full
            while (submitted < total) {
                boolean ind = indirect && rnd.nextBoolean();
                int segs = 1 + rnd.nextInt(Math.min(ind ? 6 : size, 4));
                List<Seg> chain = new ArrayList<>();
                q.begin();
                for (int s = 0; s < segs; s++) {
                    long a = buf + rnd.nextInt(60 * 1024);
                    int l = 1 + rnd.nextInt(4096);
                    boolean w = s > 0 && rnd.nextBoolean();
                    chain.add(new Seg(a, l, w));
                    if (w) {
                        q.writable(a, l);
                    } else {
                        q.readable(a, l);
                    }
                }
                int token = nextToken;
                int head = q.commit(token, ind);
                if (head < 0) {
                    break;
                }
                assertTrue(head >= 0 && head < size);
                expected.set(token, chain);
                tokenOfHead[head] = token;
                nextToken = (nextToken + 1) % 1024;
                submitted++;
            }
            boolean kicked = q.publish();
            publishes++;
            // the device drained everything last round and asked for a kick: it must come
            assertTrue(kicked, "kick after the device drained the ring");
            assertEquals(1, dev.kicksReceived());

            // device: pop all, complete in a shuffled order
            List<Integer> heads = new ArrayList<>();
            int[] h;
            while ((h = dev.popHead()) != null) {
                heads.add(h[0]);
            }
            for (int i = heads.size() - 1; i > 0; i--) {
                int j = rnd.nextInt(i + 1);
                Integer t = heads.get(i);
                heads.set(i, heads.get(j));
                heads.set(j, t);
            }
            List<Integer> completionOrder = new ArrayList<>();
            for (int head : heads) {
                List<Seg> chain = dev.chain(head);
                assertEquals(expected.get(tokenOfHead[head]), chain, "device sees the chain the driver built");
                completionOrder.add(head);
                dev.complete(head, chain.size() * 1000 + head);
            }
            // driver: reap all, check tokens and the device's view of each chain
            int t;
            int k = 0;
            while ((t = q.reap()) >= 0) {
                int head = completionOrder.get(k++);
                assertEquals(tokenOfHead[head], t, "token of the completed head");
                assertEquals(expected.get(t).size() * 1000 + head, q.lastUsedLen());
                reaped++;
            }
            assertEquals(heads.size(), k);
            assertEquals(0, q.inFlight());
            assertEquals(size, q.freeDescriptors());
        }
        assertEquals(total & 0xFFFF, q.availIdx());
        assertEquals(total & 0xFFFF, q.lastUsedIdx());
        assertTrue(publishes > 2, "several rounds");
    }

    @Test
    void kicksRespectNoNotifyWithoutEventIdx() {
        queue(DriverQueue.Options.of(8));
        Device dev = new Device(q);
        long buf = mem.allocate(4096, 4096);
        q.begin().readable(buf, 16).commit(1, false);
        assertTrue(q.publish());
        assertEquals(1, dev.kicksReceived());
        dev.used.set(JAVA_SHORT, SplitRing.USED_FLAGS, SplitRing.USED_F_NO_NOTIFY);
        q.begin().readable(buf, 16).commit(2, false);
        assertFalse(q.publish(), "device said NO_NOTIFY");
        assertEquals(0, dev.kicksReceived());
        assertFalse(q.publish(), "nothing new: no kick");
        dev.used.set(JAVA_SHORT, SplitRing.USED_FLAGS, (short) 0);
        q.begin().readable(buf, 16).commit(3, false);
        assertTrue(q.publish());
        assertEquals(1, dev.kicksReceived());
        assertEquals(1, q.kicksSuppressed());
        assertEquals(2, q.kicks());
    }

    @Test
    void kicksFollowAvailEventWithEventIdx() {
        queue(DriverQueue.Options.of(16).withEventIdx(true));
        Device dev = new Device(q);
        long buf = mem.allocate(4096, 4096);
        long availEventOff = SplitRing.availEventOffset(16);
        // avail_event 0: the first entry (0 -> 1) crosses it
        q.begin().readable(buf, 16).commit(0, false);
        assertTrue(q.publish());
        // device has not moved avail_event: 1 -> 2 does not cross 0
        q.begin().readable(buf, 16).commit(1, false);
        assertFalse(q.publish());
        // device wants a kick once entry 5 is published: 2 -> 4 no, 4 -> 6 yes
        dev.used.set(JAVA_SHORT, availEventOff, (short) 5);
        q.begin().readable(buf, 16).commit(2, false);
        q.begin().readable(buf, 16).commit(3, false);
        assertFalse(q.publish());
        q.begin().readable(buf, 16).commit(4, false);
        q.begin().readable(buf, 16).commit(5, false);
        assertTrue(q.publish());
        assertEquals(2, dev.kicksReceived());
    }

    @Test
    void needEventArithmeticWrapsAt16Bits() {
        assertTrue(SplitRing.needEvent(0xFFFF, 0x0000, 0xFFFF));
        assertTrue(SplitRing.needEvent(0xFFFE, 0x0002, 0xFFFD));
        assertFalse(SplitRing.needEvent(0x0003, 0x0002, 0xFFFD));
        assertFalse(SplitRing.needEvent(0xFFFC, 0x0002, 0xFFFD));
    }

    @Test
    void sleepingDriverReenablesInterruptsAndWakesOnTheCall() throws Exception {
        for (boolean eventIdx : new boolean[] {false, true}) {
            close();
            queue(DriverQueue.Options.of(8).withEventIdx(eventIdx));
            Device dev = new Device(q);
            long buf = mem.allocate(4096, 4096);
            for (int round = 0; round < 3; round++) {
                q.begin().writable(buf, 512).commit(round, false);
                q.publish();
                int[] h = dev.popHead();
                assertFalse(q.awaitUsed(TimeUnit.MILLISECONDS.toNanos(20)), "nothing completed yet");
                CompletableFuture<Boolean> waiter = CompletableFuture.supplyAsync(() -> q.awaitUsed(TimeUnit.SECONDS.toNanos(10)));
                // while the driver sleeps, interrupts are on
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
                while (true) {
                    VarHandle.fullFence();
                    boolean on = eventIdx
                            ? (dev.avail.get(JAVA_SHORT, SplitRing.usedEventOffset(8)) & 0xFFFF) == q.lastUsedIdx()
                            : dev.avail.get(JAVA_SHORT, SplitRing.AVAIL_FLAGS) == 0;
                    if (on) {
                        break;
                    }
                    assertTrue(System.nanoTime() < deadline, "driver never re-enabled interrupts");
                    Thread.onSpinWait();
                }
                Thread.sleep(10);
                assertFalse(waiter.isDone());
                dev.complete(h[0], 512);
                assertTrue(dev.shouldNotify(), "device must signal a sleeping driver");
                EventFd.signal(q.callFd());
                assertTrue(waiter.get(10, TimeUnit.SECONDS));
                assertEquals(round, q.reap());
                if (!eventIdx) {
                    assertEquals(SplitRing.AVAIL_F_NO_INTERRUPT, dev.avail.get(JAVA_SHORT, SplitRing.AVAIL_FLAGS), "busy driver suppresses interrupts");
                }
            }
        }
    }

    @Test
    void spuriousSignalsAreSleptThroughAndWakeupEndsTheWait() throws Exception {
        queue(DriverQueue.Options.of(8));
        long buf = mem.allocate(4096, 4096);
        q.begin().writable(buf, 512).commit(0, false);
        q.publish();
        EventFd.signal(q.callFd());
        long t0 = System.nanoTime();
        assertFalse(q.awaitUsed(TimeUnit.MILLISECONDS.toNanos(100)));
        assertTrue(System.nanoTime() - t0 >= TimeUnit.MILLISECONDS.toNanos(90), "a stale signal does not end a timed wait");
        CompletableFuture<Void> waiter = CompletableFuture.runAsync(() -> q.awaitUsed());
        Thread.sleep(50);
        assertFalse(waiter.isDone());
        q.wakeup();
        waiter.get(5, TimeUnit.SECONDS);
    }

    @Test
    void pollModeKeepsTheDeviceFromSignalling() {
        for (boolean eventIdx : new boolean[] {false, true}) {
            close();
            queue(DriverQueue.Options.of(8).withEventIdx(eventIdx).withPoll(true));
            Device dev = new Device(q);
            long buf = mem.allocate(4096, 4096);
            for (int i = 0; i < 40; i++) {
                q.begin().writable(buf, 512).commit(i, false);
                q.publish();
                int[] h = dev.popHead();
                dev.complete(h[0], 512);
                assertFalse(dev.shouldNotify(), "poll mode: no interrupt wanted (eventIdx=" + eventIdx + ", i=" + i + ")");
                assertTrue(q.awaitUsed(TimeUnit.SECONDS.toNanos(1)));
                assertEquals(i, q.reap());
                assertEquals(-1, q.reap());
            }
        }
    }

    @Test
    void fullRingRefusesChainsAndIndirectNeedsOneSlot() {
        queue(DriverQueue.Options.of(4).withIndirect(8));
        long buf = mem.allocate(4096, 4096);
        assertTrue(q.begin().readable(buf, 1).writable(buf, 1).writable(buf, 1).commit(0, false) >= 0);
        assertEquals(1, q.freeDescriptors());
        q.begin().readable(buf, 1).writable(buf, 1);
        assertEquals(-1, q.commit(1, false), "two descriptors do not fit in one");
        assertEquals(2, q.segments(), "a refused chain is kept for a retry");
        assertTrue(q.commit(1, true) >= 0, "as an indirect chain it fits");
        assertEquals(0, q.freeDescriptors());
        assertEquals(-1, q.begin().readable(buf, 1).commit(2, true));
        assertThrows(IllegalStateException.class, () -> {
            q.begin();
            for (int i = 0; i < 9; i++) {
                q.readable(buf, 1);
            }
            q.commit(3, true);
        });
    }

    @Test
    void aUsedIdNamingNoChainIsReported() {
        queue(DriverQueue.Options.of(8));
        Device dev = new Device(q);
        long buf = mem.allocate(4096, 4096);
        int head = q.begin().readable(buf, 16).commit(0, false);
        q.publish();
        dev.popHead();
        dev.complete((head + 3) % 8, 0);
        assertThrows(RingException.class, q::reap);
    }

    @Test
    void aUsedIndexRunningAheadIsReported() {
        queue(DriverQueue.Options.of(8));
        Device dev = new Device(q);
        long buf = mem.allocate(4096, 4096);
        int head = q.begin().readable(buf, 16).commit(0, false);
        q.publish();
        dev.complete(head, 0);
        dev.complete(head, 0);
        assertThrows(RingException.class, q::reap);
    }
}
