package io.vhostblk.virtq;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The inflight region survives a crash at every step of the completion protocol: what a new
 * backend resubmits is exactly what the guest has not seen completed.
 */
class SplitInflightTest {
    static final int QS = 8;

    private final MemorySegment region = Arena.ofAuto().allocate(SplitInflight.regionSize(QS), 64);

    /** A backend's lifetime up to a crash: pops heads 0..4 (avail 100..104), completes 1 and 3. */
    private SplitInflight runUntilCompletion() {
        SplitInflight a = new SplitInflight(region, QS);
        assertEquals(100, a.recover(100, 100), "a fresh region keeps the frontend's base");
        for (int h = 0; h < 5; h++) {
            a.markInflight(h);
        }
        return a;
    }

    @Test
    void crashBeforeTheBatchIsPublishedResubmitsEverythingTaken() {
        SplitInflight a = runUntilCompletion();
        a.linkBatch(new int[] {1, 3}, 2);
        // crash: used->idx never moved past 100
        SplitInflight b = new SplitInflight(region, QS);
        assertEquals(105, b.recover(100, 100), "last_avail = used + in flight");
        assertArrayEquals(new int[] {0, 1, 2, 3, 4}, b.resubmitList(), "all five, oldest first");
    }

    @Test
    void crashAfterPublishingButBeforeClearingDropsExactlyTheLastBatch() {
        SplitInflight a = runUntilCompletion();
        a.linkBatch(new int[] {1, 3}, 2);
        // used->idx published as 102; the flags were not cleared yet
        SplitInflight b = new SplitInflight(region, QS);
        assertEquals(105, b.recover(102, 102));
        assertArrayEquals(new int[] {0, 2, 4}, b.resubmitList());
        assertFalse(b.isInflight(1));
        assertFalse(b.isInflight(3));
    }

    @Test
    void crashAfterTheBatchCommittedResubmitsTheRest() {
        SplitInflight a = runUntilCompletion();
        a.linkBatch(new int[] {1, 3}, 2);
        a.commitBatch(new int[] {1, 3}, 2, 102);
        a.linkBatch(new int[] {4}, 1);
        a.commitBatch(new int[] {4}, 1, 103);
        SplitInflight b = new SplitInflight(region, QS);
        assertEquals(105, b.recover(103, 103));
        assertArrayEquals(new int[] {0, 2}, b.resubmitList());
        // the resubmitted requests complete in the new process
        b.markInflight(0);
        b.markInflight(2);
        b.linkBatch(new int[] {2, 0}, 2);
        b.commitBatch(new int[] {2, 0}, 2, 105);
        SplitInflight c = new SplitInflight(region, QS);
        assertEquals(105, c.recover(105, 105));
        assertEquals(0, c.resubmitList().length, "nothing left after a clean drain");
    }

    @Test
    void resubmissionFollowsTheOrderRequestsWereTaken() {
        SplitInflight a = new SplitInflight(region, QS);
        a.recover(0, 0);
        for (int h : new int[] {6, 2, 7, 0}) {
            a.markInflight(h);
        }
        SplitInflight b = new SplitInflight(region, QS);
        b.recover(0, 0);
        assertArrayEquals(new int[] {6, 2, 7, 0}, b.resubmitList());
        assertTrue(b.isInflight(7));
    }

    @Test
    void usedIndexWrapsAroundIn16Bits() {
        SplitInflight a = new SplitInflight(region, QS);
        a.recover(65534, 65534);
        for (int h = 0; h < 4; h++) {
            a.markInflight(h);
        }
        a.linkBatch(new int[] {0, 1, 2}, 3);
        SplitInflight b = new SplitInflight(region, QS);
        assertEquals(2, b.recover(1, 1), "used 65534 -> 1 published; one left in flight");
        assertArrayEquals(new int[] {3}, b.resubmitList());
    }
}
