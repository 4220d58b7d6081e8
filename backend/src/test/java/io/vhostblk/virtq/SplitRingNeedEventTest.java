package io.vhostblk.virtq;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** vring_need_event (virtio 1.2 §2.7.10) in free-running 16-bit arithmetic. */
class SplitRingNeedEventTest {

    /** The spec's C expression, with u16 casts done as Java char casts. */
    static boolean specFormula(int event, int newIdx, int old) {
        return (char) (newIdx - event - 1) < (char) (newIdx - old);
    }

    /** What the formula means: event is one of old, old+1, ..., new-1 (mod 2^16). */
    static boolean semantic(int event, int newIdx, int old) {
        int steps = (newIdx - old) & 0xFFFF;
        for (int k = 0; k < steps; k++) {
            if (((old + k) & 0xFFFF) == event) {
                return true;
            }
        }
        return false;
    }

    @ParameterizedTest(name = "event={0} new={1} old={2} -> {3}")
    @CsvSource({
            // event, new, old, expected
            "0, 1, 0, true",            // the first element passes event 0
            "0, 0, 0, false",           // nothing new
            "1, 1, 0, false",           // the driver wants to hear about index 1 only once it is passed
            "5, 10, 0, true",
            "9, 10, 0, true",           // upper bound: new - 1
            "10, 10, 0, false",         // event == new: not yet passed
            "0, 10, 1, false",          // below old: already signalled
            "65535, 0, 65535, true",    // one step across the wrap
            "65535, 2, 65534, true",
            "0, 2, 65534, true",
            "1, 2, 65534, true",
            "2, 2, 65534, false",
            "65533, 2, 65534, false",
            "65535, 65535, 65535, false",
            "32767, 32768, 0, true",
            "32768, 32768, 0, false",
            "40000, 100, 30000, true",  // a window of 35636 entries across the wrap
            "29999, 100, 30000, false",
    })
    void table(int event, int newIdx, int old, boolean expected) {
        assertEquals(expected, specFormula(event, newIdx, old), "table entry disagrees with the spec formula");
        assertEquals(expected, semantic(event, newIdx, old), "table entry disagrees with the meaning of the formula");
        assertEquals(expected, SplitRing.needEvent(event, newIdx, old));
    }

    @Test
    void randomTriplesMatchTheSpecFormula() {
        SplittableRandom rnd = new SplittableRandom(42);
        for (int i = 0; i < 20_000; i++) {
            int old = rnd.nextInt(65536);
            // Mostly small windows near the wrap, sometimes anything.
            int newIdx = (old + (i % 4 == 0 ? rnd.nextInt(65536) : rnd.nextInt(64))) & 0xFFFF;
            int event = i % 2 == 0 ? (old + rnd.nextInt(-8, 72)) & 0xFFFF : rnd.nextInt(65536);
            boolean want = semantic(event, newIdx, old);
            assertEquals(want, specFormula(event, newIdx, old));
            assertEquals(want, SplitRing.needEvent(event, newIdx, old), () -> "event=" + event + " new=" + newIdx + " old=" + old);
        }
    }

    @Test
    void ringLayoutSizes() {
        // virtio 1.2 §2.7: 16-byte descriptors, avail = 6 + 2n, used = 6 + 8n (with the event fields).
        assertEquals(16 * 256, SplitRing.descTableSize(256));
        assertEquals(6 + 2 * 256, SplitRing.availSize(256));
        assertEquals(6 + 8 * 256, SplitRing.usedSize(256));
        assertEquals(4 + 2 * 256, SplitRing.usedEventOffset(256));
        assertEquals(4 + 8 * 256, SplitRing.availEventOffset(256));
    }
}
