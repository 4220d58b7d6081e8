package io.vhostblk.fuzz;

import io.vhostblk.memory.GuestMemory;
import io.vhostblk.memory.MemoryRegion;

import java.util.ArrayList;
import java.util.List;

import static io.vhostblk.virtq.SplitRing.DESC_SIZE;
import static io.vhostblk.virtq.SplitRing.F_INDIRECT;
import static io.vhostblk.virtq.SplitRing.F_NEXT;
import static io.vhostblk.virtq.SplitRing.F_WRITE;
import static io.vhostblk.virtq.SplitRing.MAX_QUEUE_SIZE;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;

/**
 * The fuzz oracle for split-ring chain walking: a deliberately naive second implementation of
 * virtio 1.2 §2.7.5 (and of the backend's documented choices) that reads guest memory byte by
 * byte through its own linear region search, with no shared code with {@code SplitQueue.walk}.
 *
 * <p>Rules, in the order the spec states them: the head and every {@code next} must lie inside
 * the current table; a chain may not have more descriptors than its table (loop); an INDIRECT
 * descriptor needs the feature, is not allowed inside an indirect table nor together with NEXT,
 * and points at a table of 1..32768 whole descriptors inside one memory region; a buffer must lie
 * in guest memory (split into one piece per region it crosses) and no device-readable buffer may
 * follow a device-writable one. Backend choices the spec leaves open: zero-length descriptors
 * add no piece and their address is not translated (but a zero-length readable one after a
 * writable buffer is still out of order, while a zero-length writable one does not count as
 * one), and a chain of more than {@code capacity} pieces is refused.
 */
final class ReferenceSplitWalk {
    /** One buffer piece in guest-physical terms. */
    record Piece(long gpa, long len, boolean writable) {
    }

    /** {@code ok} with the number of descriptors walked (the indirect one included) and the pieces. */
    record Result(boolean ok, int descriptors, List<Piece> pieces, String why) {
        static Result fail(String why) {
            return new Result(false, 0, List.of(), why);
        }
    }

    private final GuestMemory memory;
    private final long descGpa;
    private final int size;
    private final boolean indirect;
    private final int capacity;

    ReferenceSplitWalk(GuestMemory memory, long descGpa, int size, boolean indirect, int capacity) {
        this.memory = memory;
        this.descGpa = descGpa;
        this.size = size;
        this.indirect = indirect;
        this.capacity = capacity;
    }

    Result walk(int head) {
        if (head >= size) {
            return Result.fail("head out of range");
        }
        long table = descGpa;
        int tableLen = size;
        int idx = head;
        int inTable = 0;
        int total = 0;
        boolean inIndirect = false;
        boolean writableSeen = false;
        List<Piece> pieces = new ArrayList<>();
        while (true) {
            if (++inTable > tableLen) {
                return Result.fail("loop");
            }
            long d = table + (long) DESC_SIZE * idx;
            long addr = le(d, 8);
            long len = le(d + 8, 4);
            int flags = (int) le(d + 12, 2);
            int next = (int) le(d + 14, 2);
            total++;
            if ((flags & F_INDIRECT) != 0) {
                if (!indirect || inIndirect || (flags & F_NEXT) != 0 || len == 0 || len % DESC_SIZE != 0
                        || len / DESC_SIZE > MAX_QUEUE_SIZE || !inOneRegion(addr, len)) {
                    return Result.fail("bad indirect descriptor");
                }
                table = addr;
                tableLen = (int) (len / DESC_SIZE);
                idx = 0;
                inTable = 0;
                inIndirect = true;
                continue;
            }
            boolean writable = (flags & F_WRITE) != 0;
            if (!writable && writableSeen) {
                return Result.fail("readable after writable");
            }
            if (len > 0) {
                long a = addr;
                long left = len;
                while (left > 0) {
                    MemoryRegion r = regionOf(a);
                    if (r == null) {
                        return Result.fail("buffer outside memory");
                    }
                    long inRegion = r.size() - (a - r.guestAddr());
                    long take = Math.min(inRegion, left);
                    pieces.add(new Piece(a, take, writable));
                    if (pieces.size() > capacity) {
                        return Result.fail("too many pieces");
                    }
                    a += take;
                    left -= take;
                    if (left > 0 && a == 0) {
                        return Result.fail("buffer wraps past 2^64");
                    }
                }
                writableSeen |= writable;
            }
            if ((flags & F_NEXT) == 0) {
                return new Result(true, total, pieces, "");
            }
            if (next >= tableLen) {
                return Result.fail("next out of range");
            }
            idx = next;
        }
    }

    /** The region holding {@code gpa}, by linear search with overflow-free unsigned arithmetic. */
    MemoryRegion regionOf(long gpa) {
        for (MemoryRegion r : memory.regions()) {
            long off = gpa - r.guestAddr();
            if (Long.compareUnsigned(gpa, r.guestAddr()) >= 0 && Long.compareUnsigned(off, r.size()) < 0) {
                return r;
            }
        }
        return null;
    }

    private boolean inOneRegion(long gpa, long len) {
        MemoryRegion r = regionOf(gpa);
        return r != null && Long.compareUnsigned(len, r.size() - (gpa - r.guestAddr())) <= 0;
    }

    /** Little-endian value of {@code n} bytes at {@code gpa}, read one byte at a time. */
    private long le(long gpa, int n) {
        long v = 0;
        for (int i = 0; i < n; i++) {
            MemoryRegion r = regionOf(gpa + i);
            if (r == null) {
                throw new AssertionError("oracle: descriptor byte at 0x" + Long.toHexString(gpa + i) + " is not in memory");
            }
            v |= (long) (r.segment().get(JAVA_BYTE, gpa + i - r.guestAddr()) & 0xFF) << (8 * i);
        }
        return v;
    }
}
