package io.vhostblk.virtq;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.util.Arrays;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

/**
 * One split queue's part of the shared inflight region (vhost-user.rst, "Inflight I/O
 * tracking"). It lives in a memfd the frontend keeps across backend restarts, so a new backend
 * process can resubmit every request the old one had taken but not completed.
 *
 * <pre>
 * QueueRegionSplit { u64 features; u16 version; u16 desc_num; u16 last_batch_head; u16 used_idx;
 *                    DescStateSplit desc[desc_num]; }                      // 16-byte header
 * DescStateSplit   { u8 inflight; u8 padding[5]; u16 next; u64 counter; }  // 16 bytes
 * </pre>
 *
 * Protocol of the device side:
 * <ol>
 *   <li>pop head {@code h}: {@code desc[h].counter = ++counter; desc[h].inflight = 1};</li>
 *   <li>complete a batch: link its heads through {@code next} starting at {@code last_batch_head},
 *       publish the used ring, then clear the batch's inflight flags and store
 *       {@code used_idx = used->idx};</li>
 *   <li>restart: if {@code used_idx != used->idx} the last batch reached the used ring but not
 *       this region, so its flags are cleared; every flag still set is a request to resubmit,
 *       in counter order, and {@code last_avail = used->idx + count}.</li>
 * </ol>
 */
public final class SplitInflight {
    public static final int VERSION = 1;
    static final int HEADER = 16;
    static final int DESC = 16;
    static final long OFF_VERSION = 8;
    static final long OFF_DESC_NUM = 10;
    static final long OFF_LAST_BATCH_HEAD = 12;
    static final long OFF_USED_IDX = 14;
    private static final VarHandle U16 = ValueLayout.JAVA_SHORT.varHandle();
    private static final VarHandle U8 = ValueLayout.JAVA_BYTE.varHandle();

    private final MemorySegment region;
    private final int descNum;
    private long counter;
    private int lastBatchHead;
    private int[] resubmit = new int[0];

    /** Bytes one queue of {@code queueSize} entries takes (64-byte aligned, like libvhost-user). */
    public static long regionSize(int queueSize) {
        return (HEADER + (long) DESC * queueSize + 63) & ~63L;
    }

    public SplitInflight(MemorySegment region, int queueSize) {
        if (region.byteSize() < HEADER + (long) DESC * queueSize) {
            throw new IllegalArgumentException("inflight region of " + region.byteSize() + " bytes for " + queueSize + " entries");
        }
        this.region = region;
        this.descNum = queueSize;
    }

    /**
     * Reconciles the region with the used ring as it is in guest memory (called when the ring
     * starts) and returns the ring's next avail index. A fresh region is initialised and keeps
     * {@code base}.
     */
    public int recover(int usedIdx, int base) {
        int version = Short.toUnsignedInt(region.get(JAVA_SHORT, OFF_VERSION));
        if (version == 0 || Short.toUnsignedInt(region.get(JAVA_SHORT, OFF_DESC_NUM)) != descNum) {
            region.fill((byte) 0);
            region.set(JAVA_SHORT, OFF_DESC_NUM, (short) descNum);
            region.set(JAVA_SHORT, OFF_USED_IDX, (short) usedIdx);
            U16.setRelease(region, OFF_VERSION, (short) VERSION);
            resubmit = new int[0];
            counter = 0;
            return base;
        }
        int regionUsed = Short.toUnsignedInt(region.get(JAVA_SHORT, OFF_USED_IDX));
        if (regionUsed != usedIdx) {
            // The last batch was published to the used ring but its flags were not cleared.
            int n = (usedIdx - regionUsed) & 0xFFFF;
            int h = Short.toUnsignedInt(region.get(JAVA_SHORT, OFF_LAST_BATCH_HEAD));
            for (int i = 0; i < n && h < descNum; i++) {
                region.set(JAVA_BYTE, descOff(h), (byte) 0);
                h = Short.toUnsignedInt(region.get(JAVA_SHORT, descOff(h) + 6));
            }
            region.set(JAVA_SHORT, OFF_USED_IDX, (short) usedIdx);
        }
        int count = 0;
        long[] keyed = new long[descNum];
        long max = 0;
        for (int i = 0; i < descNum; i++) {
            if (region.get(JAVA_BYTE, descOff(i)) == 1) {
                long c = region.get(JAVA_LONG, descOff(i) + 8);
                max = Math.max(max, c);
                // Sort by counter, keep the head: counters are far below 2^48 in practice.
                keyed[count++] = (c << 16) | i;
            }
        }
        long[] sorted = Arrays.copyOf(keyed, count);
        Arrays.sort(sorted);
        resubmit = new int[count];
        for (int i = 0; i < count; i++) {
            resubmit[i] = (int) (sorted[i] & 0xFFFF);
        }
        counter = max;
        lastBatchHead = Short.toUnsignedInt(region.get(JAVA_SHORT, OFF_LAST_BATCH_HEAD));
        return (usedIdx + count) & 0xFFFF;
    }

    /** Heads the previous backend had in flight, oldest first; they are started before new ones. */
    public int[] resubmitList() {
        return resubmit;
    }

    private static long descOff(int head) {
        return HEADER + (long) DESC * head;
    }

    /** Step 1: the request at {@code head} is now ours. */
    public void markInflight(int head) {
        long o = descOff(head);
        region.set(JAVA_LONG, o + 8, ++counter);
        U8.setRelease(region, o, (byte) 1);
    }

    /** Step 2a, before publishing the used ring: chain the batch's heads from last_batch_head. */
    public void linkBatch(int[] heads, int n) {
        for (int i = 0; i < n; i++) {
            int h = heads[i];
            region.set(JAVA_SHORT, descOff(h) + 6, (short) lastBatchHead);
            lastBatchHead = h;
        }
        U16.setRelease(region, OFF_LAST_BATCH_HEAD, (short) lastBatchHead);
    }

    /** Step 2b, after publishing the used ring: the batch is done. */
    public void commitBatch(int[] heads, int n, int usedIdx) {
        for (int i = 0; i < n; i++) {
            region.set(JAVA_BYTE, descOff(heads[i]), (byte) 0);
        }
        U16.setRelease(region, OFF_USED_IDX, (short) usedIdx);
    }

    /** Whether {@code head} is marked in flight (tests). */
    public boolean isInflight(int head) {
        return region.get(JAVA_BYTE, descOff(head)) == 1;
    }
}
