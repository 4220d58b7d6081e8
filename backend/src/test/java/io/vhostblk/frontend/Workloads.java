package io.vhostblk.frontend;

import io.vhostblk.blk.BlkRequest;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;

import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Test workloads for any vhost-user-blk backend driven through {@link BlkDriver}: blocks stamped
 * with their number and a seed, written or read back with every slot in flight. Shared by the
 * QSD reference tests and the backend conformance suite.
 */
public final class Workloads {
    private Workloads() {
    }

    /** Writes (or reads and checks) blocks 0..n-1 of {@code bs} bytes, stamped with the block number, with all slots busy. */
    public static void runAll(BlkDriver d, int n, int bs, boolean write, long seed) {
        int next = 0;
        int done = 0;
        long[] blockOf = new long[d.slots()];
        while (done < n) {
            int slot;
            while (next < n && (slot = d.acquire()) >= 0) {
                MemorySegment buf = d.data(slot);
                if (write) {
                    stamp(buf, bs, next, seed);
                } else {
                    buf.asSlice(0, bs).fill((byte) 0);
                }
                blockOf[slot] = next;
                boolean ok = d.submit(slot, write ? BlkRequest.T_OUT : BlkRequest.T_IN, (long) next * bs / 512, bs);
                assertTrue(ok, "ring has room");
                next++;
            }
            d.publish();
            int s;
            boolean any = false;
            while ((s = d.poll()) >= 0) {
                any = true;
                assertEquals(BlkRequest.S_OK, d.status(s), "status of block " + blockOf[s]);
                if (!write) {
                    assertStamped(d.data(s), bs, blockOf[s], seed);
                    assertEquals(bs + 1, d.usedLen(s), "used len of a read = data + status");
                }
                d.release(s);
                done++;
            }
            if (!any) {
                assertTrue(d.await(TimeUnit.SECONDS.toNanos(10)), "completion within 10 s: " + d.queue());
            }
        }
    }

    public static void stamp(MemorySegment buf, int bs, long block, long seed) {
        for (int i = 0; i < bs; i += 8) {
            buf.set(JAVA_LONG, i, block * 0x9E3779B97F4A7C15L ^ seed ^ i);
        }
    }

    public static void assertStamped(MemorySegment buf, int bs, long block, long seed) {
        for (int i = 0; i < bs; i += 8) {
            long v = buf.get(JAVA_LONG, i);
            if (v != (block * 0x9E3779B97F4A7C15L ^ seed ^ i)) {
                throw new AssertionError("block " + block + " byte " + i + ": 0x" + Long.toHexString(v));
            }
        }
    }

    /** {@link #runAll} on blocks [first, first+n), via a shifted view of block numbers. */
    public static void runRange(BlkDriver d, int first, int n, int bs, boolean write, long seed) {
        int next = 0;
        int done = 0;
        long[] blockOf = new long[d.slots()];
        while (done < n) {
            int slot;
            while (next < n && (slot = d.acquire()) >= 0) {
                long block = first + next;
                if (write) {
                    stamp(d.data(slot), bs, block, seed);
                }
                blockOf[slot] = block;
                assertTrue(d.submit(slot, write ? BlkRequest.T_OUT : BlkRequest.T_IN, block * bs / 512, bs));
                next++;
            }
            d.publish();
            int s;
            boolean any = false;
            while ((s = d.poll()) >= 0) {
                any = true;
                assertEquals(BlkRequest.S_OK, d.status(s));
                if (!write) {
                    assertStamped(d.data(s), bs, blockOf[s], seed);
                }
                d.release(s);
                done++;
            }
            if (!any) {
                assertTrue(d.await(TimeUnit.SECONDS.toNanos(10)), "completion within 10 s");
            }
        }
    }

}
