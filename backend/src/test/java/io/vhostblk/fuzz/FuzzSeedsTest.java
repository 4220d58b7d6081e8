package io.vhostblk.fuzz;

import io.vhostblk.blk.BlkRequest;
import io.vhostblk.server.RawSession;
import io.vhostblk.vhostuser.Request;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.IOException;
import java.io.InputStream;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Keeps the seed corpora meaningful: the checked-in files are what {@link FuzzSeeds} writes, and
 * each seed does what its name says (an "ok-" chain completes with S_OK, a "bad-" chain is
 * refused; an "ok-" session is acknowledged throughout, a "bad-" one gets a nack or is closed).
 */
@Timeout(120)
class FuzzSeedsTest {
    @Test
    void checkedInSeedsAreCurrent() throws IOException {
        for (Map.Entry<String, byte[]> e : FuzzSeeds.all().entrySet()) {
            try (InputStream in = FuzzSeedsTest.class.getResourceAsStream(e.getKey())) {
                assertNotNull(in, e.getKey() + " is not checked in: run FuzzSeeds (see backend/FUZZING.md)");
                assertArrayEquals(e.getValue(), in.readAllBytes(), e.getKey() + " is stale: run FuzzSeeds (see backend/FUZZING.md)");
            }
        }
    }

    @Test
    void splitChainSeedsDoWhatTheirNamesSay() {
        for (Map.Entry<String, byte[]> e : SplitChainSeeds.all().entrySet()) {
            String name = e.getKey();
            List<SplitChainFuzzTest.Outcome> out = SplitChainFuzzTest.run(e.getValue());
            if (name.equals("bad-avail-index-more-than-a-ring-ahead")) {
                assertTrue(out.isEmpty(), name);
                continue;
            }
            assertFalse(out.isEmpty(), name + ": no chain was published");
            for (SplitChainFuzzTest.Outcome o : out) {
                if (name.startsWith("bad-")) {
                    assertTrue(o.walked() < 0, name + ": " + o);
                    continue;
                }
                assertTrue(o.walked() > 0, name + ": " + o);
                int expected = name.startsWith("ok-") ? BlkRequest.S_OK : name.startsWith("ioerr-") ? BlkRequest.S_IOERR : BlkRequest.S_UNSUPP;
                assertEquals(expected, o.status(), name + ": " + o);
            }
        }
    }

    private static final Set<Integer> HAS_REPLY_BODY = Set.of(Request.GET_FEATURES, Request.GET_PROTOCOL_FEATURES,
            Request.GET_VRING_BASE, Request.GET_QUEUE_NUM, Request.GET_CONFIG, Request.GET_MAX_MEM_SLOTS, Request.GET_STATUS);

    @Test
    void messageSeedsDoWhatTheirNamesSay() throws InterruptedException {
        byte[] probe = VhostUserMessageFuzzTest.encode(List.of(VhostUserMessageFuzzTest.Msg.of(Request.GET_FEATURES, new byte[0])));
        for (Map.Entry<String, byte[]> e : VhostUserMessageSeeds.all().entrySet()) {
            String name = e.getKey();
            // A GET_FEATURES after the seed: answered only if the session is still up and in sync.
            byte[] input = Arrays.copyOf(e.getValue(), e.getValue().length + probe.length);
            System.arraycopy(probe, 0, input, e.getValue().length, probe.length);
            long getFeatures = VhostUserMessageFuzzTest.decode(input).stream().filter(m -> m.code() == Request.GET_FEATURES).count();
            VhostUserMessageFuzzTest.RunResult r = VhostUserMessageFuzzTest.run(input);
            assertTrue(r.endedInTime(), name);
            boolean nacked = false;
            long answered = 0;
            for (RawSession.Reply reply : r.replies()) {
                nacked |= !HAS_REPLY_BODY.contains(reply.request()) && reply.u64() != 0;
                answered += reply.request() == Request.GET_FEATURES ? 1 : 0;
            }
            boolean probeAnswered = answered == getFeatures;
            if (name.startsWith("ok-")) {
                assertTrue(!nacked && probeAnswered, name + ": replies " + r.replies());
            } else if (name.startsWith("bad-")) {
                assertTrue(nacked || !probeAnswered, name + ": neither refused nor closed, replies " + r.replies());
            }
            VhostUserMessageFuzzTest.checkFreshFrontendIsServed();
        }
    }
}
