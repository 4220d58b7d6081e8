package io.vhostblk.virtq;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static io.vhostblk.virtq.SplitRing.AVAIL_F_NO_INTERRUPT;
import static io.vhostblk.virtq.SplitRing.USED_F_NO_NOTIFY;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Ring index handling of {@link SplitQueue}: avail consumption, used publication, notifications. */
class SplitQueueTest {
    static final int QSIZE = 16;

    MockGuestMemory mem;
    MockSplitQueue mq;

    @BeforeEach
    void setUp() {
        mem = MockGuestMemory.memfd(0, 0x10000, 0x10000, 0x10000);
        mq = MockSplitQueue.at(mem, QSIZE, 0x100);
    }

    @AfterEach
    void tearDown() {
        mem.close();
    }

    @Test
    void constructorRefusesBadSizesAndShortAreas() {
        MemorySegment big = Arena.ofAuto().allocate(1 << 16, 8);
        assertThrows(IllegalArgumentException.class, () -> new SplitQueue(12, big, big, big, mem.memory(), false, false, 0));
        assertThrows(IllegalArgumentException.class, () -> new SplitQueue(0, big, big, big, mem.memory(), false, false, 0));
        assertThrows(IllegalArgumentException.class, () -> new SplitQueue(65536, big, big, big, mem.memory(), false, false, 0));
        MemorySegment shortUsed = big.asSlice(0, SplitRing.usedSize(QSIZE) - 1);
        assertThrows(IllegalArgumentException.class, () -> new SplitQueue(QSIZE, big, big, shortUsed, mem.memory(), false, false, 0));
        assertEquals(QSIZE, mq.create(false, false, 0).size());
    }

    @Test
    void pendingAndPopHeadAcrossTheAvailIndexWrap() {
        mq.setAvailIdx(65530);
        SplitQueue q = mq.create(false, false, 65530);
        assertEquals(0, q.pending());
        int[] heads = new int[10];
        for (int i = 0; i < heads.length; i++) {
            heads[i] = (i * 5 + 3) % QSIZE;
            mq.publish(heads[i]);
        }
        assertEquals(4, mq.availIdx(), "65530 + 10 wraps to 4");
        assertEquals(4, q.availIdx());
        assertEquals(10, q.pending());
        for (int i = 0; i < heads.length; i++) {
            assertEquals(heads[i], q.popHead(), "head #" + i);
            assertEquals(heads.length - 1 - i, q.pending());
        }
        assertEquals(4, q.lastAvail());
        assertFalse(q.isBroken());
    }

    @Test
    void popHeadReadsTheSlotOfLastAvailModuloSize() {
        mq.setAvailIdx(35);
        SplitQueue q = mq.create(false, false, 35);
        mq.putAvailEntry(35, 9);     // slot 3
        mq.putAvailEntry(36, 11);    // slot 4
        mq.setAvailIdx(37);
        assertEquals(2, q.pending());
        assertEquals(9, q.popHead());
        assertEquals(11, q.popHead());
        assertEquals(37, q.lastAvail());
    }

    @Test
    void availIndexJumpingByMoreThanTheQueueSizeBreaksTheQueue() {
        mq.setAvailIdx(65530);
        SplitQueue q = mq.create(false, false, 65530);
        mq.setAvailIdx((65530 + QSIZE + 1) & 0xFFFF);
        assertEquals(0, q.pending());
        assertTrue(q.isBroken());
        mq.setAvailIdx(65531);
        assertEquals(0, q.pending(), "a broken queue stays broken");
        assertTrue(q.isBroken());
        assertFalse(q.enableNotification(), "a broken queue never reports work");
    }

    @Test
    void availIndexJumpingByExactlyTheQueueSizeIsFine() {
        mq.setAvailIdx(65530);
        SplitQueue q = mq.create(false, false, 65530);
        mq.setAvailIdx((65530 + QSIZE) & 0xFFFF);
        assertEquals(QSIZE, q.pending());
        assertFalse(q.isBroken());
    }

    @Test
    void addUsedWritesTheElementAndPublishUsedTheIndex() {
        SplitQueue q = mq.create(false, false, 0);
        assertEquals(0, q.usedIdx());
        q.addUsed(3, 513);
        assertEquals(3, mq.usedId(0));
        assertEquals(513, mq.usedLen(0));
        assertEquals(0, mq.usedIdx(), "not visible before publishUsed");
        assertEquals(1, q.usedIdx());
        q.addUsed(7, 0);
        q.publishUsed();
        assertEquals(2, mq.usedIdx());
        assertEquals(7, mq.usedId(1));
        assertEquals(0, mq.usedLen(1));
    }

    @Test
    void usedRingWrapsAtTheQueueSizeAndTheIndexAt65536() {
        mq.setUsedIdx(65534);
        SplitQueue q = mq.create(false, false, 0);
        assertEquals(65534, q.usedIdx(), "the device continues from the used index in the ring");
        for (int i = 0; i < 4; i++) {
            q.addUsed(10 + i, 100 + i);
        }
        q.publishUsed();
        assertEquals(2, mq.usedIdx());
        // positions 65534, 65535, 0, 1 are slots 14, 15, 0, 1
        for (int i = 0; i < 4; i++) {
            int pos = (65534 + i) & 0xFFFF;
            assertEquals(10 + i, mq.usedId(pos));
            assertEquals(100 + i, mq.usedLen(pos));
        }
    }

    @Test
    void enableNotificationWithEventIdxWritesAvailEventAndRechecks() {
        mq.setAvailIdx(7);
        SplitQueue q = mq.create(true, false, 7);
        mq.setAvailEvent(0xABCD);
        assertFalse(q.enableNotification());
        assertEquals(7, mq.availEvent(), "avail_event = next index we will read");
        assertEquals(0, mq.usedFlags(), "EVENT_IDX does not use the flags");

        mq.publish(2);
        assertTrue(q.enableNotification(), "an entry arrived");
        assertEquals(2, q.popHead());
        assertFalse(q.enableNotification());
        assertEquals(8, mq.availEvent());
    }

    @Test
    void disableAndEnableNotificationWithoutEventIdxUseUsedFlags() {
        SplitQueue q = mq.create(false, false, 0);
        q.disableNotification();
        assertEquals(USED_F_NO_NOTIFY, mq.usedFlags());
        assertFalse(q.enableNotification());
        assertEquals(0, mq.usedFlags());
        q.disableNotification();
        mq.publish(4);
        assertTrue(q.enableNotification());
        assertEquals(0, mq.usedFlags());
    }

    @Test
    void disableNotificationWithEventIdxTouchesNothing() {
        SplitQueue q = mq.create(true, false, 0);
        mq.setAvailEvent(0x1234);
        q.disableNotification();
        assertEquals(0, mq.usedFlags());
        assertEquals(0x1234, mq.availEvent());
    }

    @Test
    void needsNotificationWithoutEventIdxFollowsNoInterrupt() {
        SplitQueue q = mq.create(false, false, 0);
        q.addUsed(1, 1);
        q.publishUsed();
        assertTrue(q.needsNotification());
        mq.setAvailFlags(AVAIL_F_NO_INTERRUPT);
        assertFalse(q.needsNotification());
        mq.setUsedEvent(0); // ignored without EVENT_IDX
        assertFalse(q.needsNotification());
        mq.setAvailFlags(0);
        assertTrue(q.needsNotification());
    }

    @Test
    void needsNotificationWithEventIdxFollowsUsedEvent() {
        SplitQueue q = mq.create(true, false, 0);
        // The driver says "not before used index 100" and even sets NO_INTERRUPT: the first
        // notification is sent anyway (nothing was signalled yet), NO_INTERRUPT is ignored.
        mq.setUsedEvent(100);
        mq.setAvailFlags(AVAIL_F_NO_INTERRUPT);
        q.addUsed(0, 1);
        q.publishUsed();
        assertTrue(q.needsNotification(), "first notification is always sent");

        mq.setUsedEvent(1);          // notify when used->idx passes 1
        q.addUsed(1, 1);             // used idx 2
        q.publishUsed();
        assertTrue(q.needsNotification());

        q.addUsed(2, 1);             // used idx 3; used_event still 1: already signalled past it
        q.publishUsed();
        assertFalse(q.needsNotification());

        mq.setUsedEvent(5);
        q.addUsed(3, 1);             // 4: event 5 not passed
        q.publishUsed();
        assertFalse(q.needsNotification());
        q.addUsed(4, 1);             // 5: still not passed (needs idx 6)
        q.publishUsed();
        assertFalse(q.needsNotification());
        q.addUsed(5, 1);
        q.addUsed(6, 1);             // 7: passed 5 inside this batch
        q.publishUsed();
        assertTrue(q.needsNotification());
        assertFalse(q.needsNotification(), "nothing new since the last signal");
    }

    @Test
    void needsNotificationWithEventIdxAcrossTheWrap() {
        mq.setUsedIdx(65533);
        SplitQueue q = mq.create(true, false, 0);
        q.addUsed(0, 1);             // 65534
        q.publishUsed();
        assertTrue(q.needsNotification(), "first");
        mq.setUsedEvent(65535);
        q.addUsed(1, 1);             // 65535: event 65535 not yet passed
        q.publishUsed();
        assertFalse(q.needsNotification());
        q.addUsed(2, 1);
        q.addUsed(3, 1);             // 1: passed 65535 across the wrap
        q.publishUsed();
        assertEquals(1, mq.usedIdx());
        assertTrue(q.needsNotification());
        mq.setUsedEvent(1);
        q.addUsed(4, 1);             // 2: passed 1
        q.publishUsed();
        assertTrue(q.needsNotification());
        mq.setUsedEvent(65535);      // stale threshold far behind: nothing due
        q.addUsed(5, 1);
        q.publishUsed();
        assertFalse(q.needsNotification());
    }
}
