package io.vhostblk.frontend;

import io.vhostblk.linux.Epoll;
import io.vhostblk.linux.Errno;
import io.vhostblk.linux.ErrnoException;
import io.vhostblk.linux.EventFd;
import io.vhostblk.linux.Libc;
import io.vhostblk.virtq.SplitRing;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;

import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

/**
 * The driver side of one split virtqueue living in {@link GuestMemory}: what a guest's virtio
 * driver does, so a vhost-user backend can be exercised without a VM.
 *
 * <p>Use from one thread (the queue's owner); only {@link #wakeup} may be called from another.
 * The data path allocates nothing: chains are built in preallocated arrays
 * ({@link #begin}, {@link #readable}, {@link #writable}, {@link #commit}), made visible with one
 * release store of the avail index ({@link #publish}), and completions come back as the
 * caller's int tokens ({@link #reap}).
 *
 * <p>Notifications follow virtio 1.x §2.7: a kick (write to the kick eventfd) is sent only when
 * the device asks for it (no {@code VRING_USED_F_NO_NOTIFY}, or with EVENT_IDX when the new avail
 * index passes {@code avail_event}); before sleeping on the call eventfd the driver re-enables
 * interrupts ({@code used_event} = last seen used index with EVENT_IDX, otherwise clears
 * {@code VRING_AVAIL_F_NO_INTERRUPT}) and re-checks the used ring, so no completion is lost.
 * In poll mode interrupts stay suppressed and the caller spins on {@link #hasUsed}.
 *
 * <p>Memory ordering: descriptors and avail ring entries are plain stores, the avail index a
 * release store; the used index is read with acquire before its entries; a full fence separates
 * publishing from reading the device's notification suppression fields (and re-enabling
 * interrupts from re-checking the used index).
 */
public final class DriverQueue implements AutoCloseable {
    private static final int EPOLLET = 1 << 31;
    /** 16-bit ring fields with release/acquire access (coordinates: segment, offset). */
    private static final VarHandle U16 = JAVA_SHORT.varHandle();

    /** What the queue should look like. */
    public record Options(int size, boolean eventIdx, int indirectMax, boolean poll, int ringRegion) {
        public Options {
            if (size < 1 || size > SplitRing.MAX_QUEUE_SIZE || Integer.bitCount(size) != 1) {
                throw new IllegalArgumentException("queue size must be a power of two in 1.." + SplitRing.MAX_QUEUE_SIZE + ", got " + size);
            }
            if (indirectMax < 0) {
                throw new IllegalArgumentException("indirectMax " + indirectMax);
            }
        }

        public static Options of(int size) {
            return new Options(size, false, 0, false, 0);
        }

        public Options withEventIdx(boolean on) {
            return new Options(size, on, indirectMax, poll, ringRegion);
        }

        /** Enables INDIRECT chains of up to {@code max} descriptors (0 = no indirect tables). */
        public Options withIndirect(int max) {
            return new Options(size, eventIdx, max, poll, ringRegion);
        }

        public Options withPoll(boolean on) {
            return new Options(size, eventIdx, indirectMax, on, ringRegion);
        }

        public Options withRingRegion(int region) {
            return new Options(size, eventIdx, indirectMax, poll, region);
        }
    }

    private final GuestMemory mem;
    private final int index;
    private final int size;
    private final int mask;
    private final boolean eventIdx;
    private final boolean poll;
    private final int indirectMax;

    private final long descGpa;
    private final long availGpa;
    private final long usedGpa;
    private final MemorySegment desc;
    private final MemorySegment avail;
    private final MemorySegment used;
    private final long usedEventOff;
    private final long availEventOff;
    private final long indirectGpa;
    private final MemorySegment indirect;

    private final int kickFd;
    private final int callFd;
    /** Watches the call eventfd edge-triggered: one epoll_wait per sleep, the counter is never read. */
    private final Epoll callWatch;

    // free descriptors: a list threaded through next[]; next[] also keeps each chain's links
    private final int[] next;
    private int freeHead;
    private int numFree;
    /** Ring descriptors used by the chain whose head is i; 0 when i heads no chain in flight. */
    private final int[] chainLen;
    private final int[] token;
    private int inFlight;

    // ring indices, free running modulo 2^16
    private int availIdx;
    private int lastKickAvail;
    private int lastUsed;
    private int usedSeen;
    private int usedEventWritten = -1;
    private boolean interruptsOff;
    private int lastUsedLen;
    private volatile boolean wakeupRequested;

    // chain under construction
    private final int maxSegs;
    private final long[] segAddr;
    private final int[] segLen;
    private final short[] segFlags;
    private int segCount;

    // statistics
    private long kicks;
    private long kicksSuppressed;
    private long sleeps;
    private long completions;

    public DriverQueue(GuestMemory mem, int index, Options o) {
        this.mem = mem;
        this.index = index;
        this.size = o.size();
        this.mask = size - 1;
        this.eventIdx = o.eventIdx();
        this.poll = o.poll();
        this.indirectMax = o.indirectMax();

        descGpa = mem.allocateIn(o.ringRegion(), SplitRing.descTableSize(size), GuestMemory.PAGE);
        availGpa = mem.allocateIn(o.ringRegion(), SplitRing.availSize(size), GuestMemory.PAGE);
        usedGpa = mem.allocateIn(o.ringRegion(), SplitRing.usedSize(size), GuestMemory.PAGE);
        desc = mem.hostView(descGpa, SplitRing.descTableSize(size));
        avail = mem.hostView(availGpa, SplitRing.availSize(size));
        used = mem.hostView(usedGpa, SplitRing.usedSize(size));
        desc.fill((byte) 0);
        avail.fill((byte) 0);
        used.fill((byte) 0);
        usedEventOff = SplitRing.usedEventOffset(size);
        availEventOff = SplitRing.availEventOffset(size);
        if (indirectMax > 0) {
            long bytes = (long) size * indirectMax * SplitRing.DESC_SIZE;
            indirectGpa = mem.allocate(bytes, GuestMemory.PAGE);
            indirect = mem.hostView(indirectGpa, bytes);
        } else {
            indirectGpa = 0;
            indirect = null;
        }

        next = new int[size];
        for (int i = 0; i < size; i++) {
            next[i] = i + 1;
        }
        freeHead = 0;
        numFree = size;
        chainLen = new int[size];
        token = new int[size];

        maxSegs = Math.max(size, indirectMax);
        segAddr = new long[maxSegs];
        segLen = new int[maxSegs];
        segFlags = new short[maxSegs];

        kickFd = EventFd.create();
        callFd = EventFd.create();
        // Edge-triggered: every write by the device (or wakeup()) is one event, so sleeping costs a
        // single epoll_wait and the eventfd needs no read. (A blocking read would not do: the fd's
        // file status flags are shared with the backend, and backends set O_NONBLOCK on it.)
        callWatch = new Epoll(1);
        callWatch.add(callFd, Epoll.EPOLLIN | EPOLLET, 0);

        if (poll) {
            disableInterrupts();
        }
    }

    // ------------------------------------------------------------------ identity and layout

    public int index() {
        return index;
    }

    public int size() {
        return size;
    }

    public boolean eventIdx() {
        return eventIdx;
    }

    public boolean pollMode() {
        return poll;
    }

    public int indirectMax() {
        return indirectMax;
    }

    public int kickFd() {
        return kickFd;
    }

    public int callFd() {
        return callFd;
    }

    public long descGpa() {
        return descGpa;
    }

    public long availGpa() {
        return availGpa;
    }

    public long usedGpa() {
        return usedGpa;
    }

    /** Ring addresses as SET_VRING_ADDR wants them: frontend user (virtual) addresses. */
    public long descUserAddr() {
        return desc.address();
    }

    public long availUserAddr() {
        return avail.address();
    }

    public long usedUserAddr() {
        return used.address();
    }

    /** The raw rings, for tests that want to forge entries or act as the device. */
    public MemorySegment descTable() {
        return desc;
    }

    public MemorySegment availRing() {
        return avail;
    }

    public MemorySegment usedRing() {
        return used;
    }

    public GuestMemory memory() {
        return mem;
    }

    // ------------------------------------------------------------------ building chains

    /** Free ring descriptors. */
    public int freeDescriptors() {
        return numFree;
    }

    /** Chains handed to the device and not yet reaped. */
    public int inFlight() {
        return inFlight;
    }

    /** Starts a new chain (discarding any segments of an uncommitted one). */
    public DriverQueue begin() {
        segCount = 0;
        return this;
    }

    /** Appends a device-readable buffer (driver to device). */
    public DriverQueue readable(long gpa, int len) {
        return segment(gpa, len, (short) 0);
    }

    /** Appends a device-writable buffer (device to driver). */
    public DriverQueue writable(long gpa, int len) {
        return segment(gpa, len, SplitRing.F_WRITE);
    }

    /**
     * Appends a buffer with raw descriptor flags; NEXT is managed by the queue and ignored here.
     * Virtio wants readable buffers before writable ones; the queue does not enforce it, so tests
     * can send a device what a broken driver would.
     */
    public DriverQueue segment(long gpa, int len, short flags) {
        if (segCount == maxSegs) {
            throw new IllegalStateException("a chain holds at most " + maxSegs + " segments on this queue");
        }
        segAddr[segCount] = gpa;
        segLen[segCount] = len;
        segFlags[segCount] = (short) (flags & ~SplitRing.F_NEXT);
        segCount++;
        return this;
    }

    public int segments() {
        return segCount;
    }

    /**
     * Puts the chain built since {@link #begin} into the descriptor table and the avail ring (not
     * yet visible to the device: see {@link #publish}). With {@code useIndirect} the segments go
     * into this head's preallocated indirect table and the ring gets one INDIRECT descriptor.
     * Returns the head descriptor id, or -1 if there are not enough free descriptors (the chain
     * is kept, so the caller may reap and retry).
     */
    public int commit(int userToken, boolean useIndirect) {
        int n = segCount;
        if (n == 0) {
            throw new IllegalStateException("empty chain");
        }
        int ringDescs;
        if (useIndirect) {
            if (indirectMax == 0) {
                throw new IllegalStateException("queue " + index + " was built without indirect tables");
            }
            if (n > indirectMax) {
                throw new IllegalStateException("chain of " + n + " segments exceeds the indirect table size " + indirectMax);
            }
            ringDescs = 1;
        } else {
            ringDescs = n;
        }
        if (numFree < ringDescs) {
            return -1;
        }
        int head = freeHead;
        if (useIndirect) {
            long tableOff = (long) head * indirectMax * SplitRing.DESC_SIZE;
            for (int i = 0; i < n; i++) {
                long o = tableOff + (long) i * SplitRing.DESC_SIZE;
                boolean last = i == n - 1;
                indirect.set(JAVA_LONG, o + SplitRing.DESC_ADDR, segAddr[i]);
                indirect.set(JAVA_INT, o + SplitRing.DESC_LEN, segLen[i]);
                indirect.set(JAVA_SHORT, o + SplitRing.DESC_FLAGS, (short) (segFlags[i] | (last ? 0 : SplitRing.F_NEXT)));
                indirect.set(JAVA_SHORT, o + SplitRing.DESC_NEXT, (short) (last ? 0 : i + 1));
            }
            writeDesc(head, indirectGpa + tableOff, n * SplitRing.DESC_SIZE, SplitRing.F_INDIRECT, 0);
            freeHead = next[head];
        } else {
            int d = head;
            for (int i = 0; i < n; i++) {
                boolean last = i == n - 1;
                int nx = next[d];
                writeDesc(d, segAddr[i], segLen[i], (short) (segFlags[i] | (last ? 0 : SplitRing.F_NEXT)), last ? 0 : nx);
                d = nx;
            }
            freeHead = d;
        }
        numFree -= ringDescs;
        chainLen[head] = ringDescs;
        token[head] = userToken;
        inFlight++;
        avail.set(JAVA_SHORT, SplitRing.AVAIL_RING + 2L * (availIdx & mask), (short) head);
        availIdx = (availIdx + 1) & 0xFFFF;
        segCount = 0;
        return head;
    }

    private void writeDesc(int i, long addr, int len, short flags, int nextId) {
        long o = (long) i * SplitRing.DESC_SIZE;
        desc.set(JAVA_LONG, o + SplitRing.DESC_ADDR, addr);
        desc.set(JAVA_INT, o + SplitRing.DESC_LEN, len);
        desc.set(JAVA_SHORT, o + SplitRing.DESC_FLAGS, flags);
        desc.set(JAVA_SHORT, o + SplitRing.DESC_NEXT, (short) nextId);
    }

    /**
     * Raw access for robustness tests: writes descriptor {@code i} as given (the free list is not
     * consulted) and appends {@code head} to the avail ring. Such chains are unknown to
     * {@link #reap}, which will report their completion as a {@link RingException}.
     */
    public void forgeDescriptor(int i, long addr, int len, short flags, int nextId) {
        writeDesc(i, addr, len, flags, nextId);
    }

    public void forgeAvail(int head) {
        avail.set(JAVA_SHORT, SplitRing.AVAIL_RING + 2L * (availIdx & mask), (short) head);
        availIdx = (availIdx + 1) & 0xFFFF;
    }

    // ------------------------------------------------------------------ publishing and kicking

    /** The avail index as the driver will publish it next (free running, 16 bits). */
    public int availIdx() {
        return availIdx;
    }

    /**
     * Makes all committed chains visible (release store of avail idx) and kicks the device if it
     * wants a notification. Returns true if a kick was sent.
     */
    public boolean publish() {
        int newIdx = availIdx;
        int old = lastKickAvail;
        if (newIdx == old) {
            return false;
        }
        U16.setRelease(avail, (long) SplitRing.AVAIL_IDX, (short) newIdx);
        lastKickAvail = newIdx;
        VarHandle.fullFence();
        boolean need;
        if (eventIdx) {
            int availEvent = used.get(JAVA_SHORT, availEventOff) & 0xFFFF;
            need = SplitRing.needEvent(availEvent, newIdx, old);
        } else {
            need = (used.get(JAVA_SHORT, SplitRing.USED_FLAGS) & SplitRing.USED_F_NO_NOTIFY) == 0;
        }
        if (need) {
            kick();
            return true;
        }
        kicksSuppressed++;
        return false;
    }

    /** Writes the kick eventfd unconditionally. */
    public void kick() {
        kicks++;
        if (!EventFd.signal(kickFd)) {
            throw new ErrnoException("write(kick eventfd)", Errno.EBADF);
        }
    }

    // ------------------------------------------------------------------ completions

    /** Index of the next used entry the driver will read (free running, 16 bits). */
    public int lastUsedIdx() {
        return lastUsed;
    }

    /** True when the device has published used entries not reaped yet (acquire load of used idx). */
    public boolean hasUsed() {
        if (usedSeen != lastUsed) {
            return true;
        }
        usedSeen = (short) U16.getAcquire(used, (long) SplitRing.USED_IDX) & 0xFFFF;
        return usedSeen != lastUsed;
    }

    /**
     * Takes the next used entry: frees its descriptors and returns the token its chain was
     * committed with, or -1 when there is none. {@link #lastUsedLen} is the device's byte count.
     */
    public int reap() {
        if (!hasUsed()) {
            if (poll && eventIdx && usedEventWritten != lastUsed) {
                suppressWithEventIdx();
            }
            return -1;
        }
        int pending = (usedSeen - lastUsed) & 0xFFFF;
        if (pending > inFlight) {
            throw new RingException("queue " + index + ": used idx " + usedSeen + " is " + pending
                    + " entries ahead of the driver's " + lastUsed + " but only " + inFlight + " chains are in flight");
        }
        long e = SplitRing.USED_RING + (long) SplitRing.USED_ELEM_SIZE * (lastUsed & mask);
        int id = used.get(JAVA_INT, e);
        int len = used.get(JAVA_INT, e + 4);
        if (id < 0 || id >= size || chainLen[id] == 0) {
            throw new RingException("queue " + index + ": used entry " + lastUsed + " names descriptor " + Integer.toUnsignedString(id)
                    + ", which heads no chain in flight");
        }
        lastUsed = (lastUsed + 1) & 0xFFFF;
        int n = chainLen[id];
        chainLen[id] = 0;
        int last = id;
        for (int i = 1; i < n; i++) {
            last = next[last];
        }
        next[last] = freeHead;
        freeHead = id;
        numFree += n;
        inFlight--;
        completions++;
        lastUsedLen = len;
        return token[id];
    }

    /** Bytes the device reported written for the entry last returned by {@link #reap}. */
    public int lastUsedLen() {
        return lastUsedLen;
    }

    // ------------------------------------------------------------------ interrupts and waiting

    /** Asks the device not to signal the call eventfd (for the time the driver is busy anyway). */
    public void disableInterrupts() {
        if (eventIdx) {
            suppressWithEventIdx();
        } else if (!interruptsOff) {
            avail.set(JAVA_SHORT, SplitRing.AVAIL_FLAGS, SplitRing.AVAIL_F_NO_INTERRUPT);
        }
        interruptsOff = true;
    }

    /** With EVENT_IDX: put used_event half the index space away, so the device will not signal. */
    private void suppressWithEventIdx() {
        int v = (lastUsed + 0x8000) & 0xFFFF;
        avail.set(JAVA_SHORT, usedEventOff, (short) v);
        usedEventWritten = lastUsed;
    }

    /**
     * Asks the device to signal on its next completion. Returns true if completions are already
     * pending (checked after a full fence), in which case the caller must not sleep.
     */
    public boolean enableInterrupts() {
        if (eventIdx) {
            avail.set(JAVA_SHORT, usedEventOff, (short) lastUsed);
            usedEventWritten = -1;
        } else if (interruptsOff) {
            avail.set(JAVA_SHORT, SplitRing.AVAIL_FLAGS, (short) 0);
        }
        interruptsOff = false;
        VarHandle.fullFence();
        return hasUsed();
    }

    /**
     * Blocks until used entries are pending. In poll mode spins; otherwise re-enables interrupts
     * and sleeps on the call eventfd. {@link #wakeup} from another thread ends the wait early
     * (then this returns with nothing pending).
     */
    public void awaitUsed() {
        awaitUsed(-1);
    }

    /**
     * As {@link #awaitUsed()}, for at most {@code timeoutNanos} (negative = forever). Returns
     * whether used entries are pending. Spurious signals on the call eventfd (backends signal
     * it when it is set, for instance) are slept through.
     */
    public boolean awaitUsed(long timeoutNanos) {
        if (hasUsed()) {
            return true;
        }
        long deadline = timeoutNanos < 0 ? Long.MAX_VALUE : System.nanoTime() + timeoutNanos;
        if (poll) {
            while (!hasUsed()) {
                if (wakeupRequested) {
                    wakeupRequested = false;
                    return false;
                }
                if (timeoutNanos >= 0 && System.nanoTime() - deadline >= 0) {
                    return false;
                }
                Thread.onSpinWait();
            }
            return true;
        }
        boolean ready = false;
        while (true) {
            if (enableInterrupts()) {
                ready = true;
                break;
            }
            if (wakeupRequested) {
                break;
            }
            sleeps++;
            if (timeoutNanos < 0) {
                callWatch.await(-1);
            } else {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    break;
                }
                callWatch.await((int) Math.min(Integer.MAX_VALUE, (left + 999_999) / 1_000_000));
            }
            if (hasUsed()) {
                ready = true;
                break;
            }
        }
        wakeupRequested = false;
        if (!eventIdx) {
            // busy from now on: no interrupts until the driver sleeps again
            disableInterrupts();
        }
        return ready;
    }

    /** Ends a sleeping {@link #awaitUsed} (callable from any thread). */
    public void wakeup() {
        wakeupRequested = true;
        EventFd.signal(callFd);
    }

    // ------------------------------------------------------------------ statistics

    public long kicks() {
        return kicks;
    }

    public long kicksSuppressed() {
        return kicksSuppressed;
    }

    public long sleeps() {
        return sleeps;
    }

    public long completions() {
        return completions;
    }

    /** Closes the eventfds. The guest memory stays with its owner. */
    @Override
    public void close() {
        Libc.closeQuietly(kickFd);
        callWatch.close();
        Libc.closeQuietly(callFd);
    }

    @Override
    public String toString() {
        return "DriverQueue[" + index + ", size " + size + (eventIdx ? ", event-idx" : "") + (indirectMax > 0 ? ", indirect " + indirectMax : "")
                + (poll ? ", poll" : "") + ", avail " + availIdx + ", used " + lastUsed + ", in flight " + inFlight + "]";
    }
}
