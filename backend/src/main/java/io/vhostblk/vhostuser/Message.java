package io.vhostblk.vhostuser;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED;

/**
 * One vhost-user message as a flyweight over a reusable native buffer: the 12-byte header
 * ({@code request, flags, size}), up to {@link #MAX_PAYLOAD} payload bytes and up to 8 fds.
 *
 * <p>Payload accessors take byte offsets into the payload and check them against the
 * received size, so a short or malformed message raises {@link ProtocolException} instead of
 * reading stale bytes.
 *
 * <p>The buffer is native memory of a shared arena: {@link #close} frees it (fds are left to
 * {@link #closeFds}).
 */
public final class Message implements AutoCloseable {
    public static final int HEADER_SIZE = 12;
    /** Largest payload we accept: SET_MEM_TABLE with 8 regions is 264 bytes, GET_CONFIG 12+256. */
    public static final int MAX_PAYLOAD = 4096;
    public static final int VERSION = 0x1;
    public static final int FLAG_VERSION_MASK = 0x3;
    public static final int FLAG_REPLY = 0x4;
    public static final int FLAG_NEED_REPLY = 0x8;

    /** Payload sizes of the fixed-layout payload kinds. */
    public static final int U64_SIZE = 8;
    public static final int VRING_STATE_SIZE = 8;
    public static final int VRING_ADDR_SIZE = 40;
    public static final int MEM_REGION_SIZE = 32;
    public static final int MEM_TABLE_HEADER = 8;
    public static final int SINGLE_REGION_SIZE = 8 + MEM_REGION_SIZE;
    public static final int CONFIG_HEADER = 12;
    public static final int INFLIGHT_SIZE = 24;

    private final Arena arena = Arena.ofShared();
    final MemorySegment buf = arena.allocate(HEADER_SIZE + MAX_PAYLOAD, 8);
    final int[] fds = new int[8];
    int fdCount;

    public int request() {
        return buf.get(JAVA_INT, 0);
    }

    public int flags() {
        return buf.get(JAVA_INT, 4);
    }

    public int size() {
        return buf.get(JAVA_INT, 8);
    }

    public boolean needReply() {
        return (flags() & FLAG_NEED_REPLY) != 0;
    }

    public int fdCount() {
        return fdCount;
    }

    public int fd(int i) {
        if (i >= fdCount) {
            throw new ProtocolException(Request.name(request()) + " carries no file descriptor #" + i);
        }
        return fds[i];
    }

    /** Takes ownership of fd {@code i}: the message will no longer close it. */
    public int takeFd(int i) {
        int fd = fd(i);
        fds[i] = -1;
        return fd;
    }

    /** Starts a new outgoing message. */
    public Message begin(int request, int flags) {
        buf.set(JAVA_INT, 0, request);
        buf.set(JAVA_INT, 4, flags | VERSION);
        buf.set(JAVA_INT, 8, 0);
        fdCount = 0;
        return this;
    }

    public Message size(int size) {
        if (size < 0 || size > MAX_PAYLOAD) {
            throw new ProtocolException("payload size " + size);
        }
        buf.set(JAVA_INT, 8, size);
        return this;
    }

    public Message attachFd(int fd) {
        fds[fdCount++] = fd;
        return this;
    }

    public void requireSize(int expected) {
        if (size() != expected) {
            throw new ProtocolException(Request.name(request()) + " payload is " + size() + " bytes, expected " + expected);
        }
    }

    public void requireSizeAtLeast(int expected) {
        if (size() < expected) {
            throw new ProtocolException(Request.name(request()) + " payload is " + size() + " bytes, expected at least " + expected);
        }
    }

    private void check(long off, int len) {
        if (off < 0 || off + len > size()) {
            throw new ProtocolException(Request.name(request()) + " payload too short (" + size() + " bytes) for field at " + off);
        }
    }

    // The payload starts at byte 12 of the buffer, so its u64 fields are never 8-aligned in
    // memory: payload accesses must use the unaligned layouts (the aligned ones throw).

    public long u64(long off) {
        check(off, 8);
        return buf.get(JAVA_LONG_UNALIGNED, HEADER_SIZE + off);
    }

    public int u32(long off) {
        check(off, 4);
        return buf.get(JAVA_INT_UNALIGNED, HEADER_SIZE + off);
    }

    public void putU64(long off, long v) {
        buf.set(JAVA_LONG_UNALIGNED, HEADER_SIZE + off, v);
    }

    public void putU32(long off, int v) {
        buf.set(JAVA_INT_UNALIGNED, HEADER_SIZE + off, v);
    }

    /** The payload bytes [off, off+len) as a segment (bounds-checked against the payload size). */
    public MemorySegment payload(long off, int len) {
        check(off, len);
        return buf.asSlice(HEADER_SIZE + off, len);
    }

    /** Raw payload area for building outgoing messages (up to MAX_PAYLOAD). */
    public MemorySegment payloadArea() {
        return buf.asSlice(HEADER_SIZE, MAX_PAYLOAD);
    }

    /** Closes any fds still owned by this message (not taken by the handler). */
    public void closeFds() {
        for (int i = 0; i < fdCount; i++) {
            if (fds[i] >= 0) {
                io.vhostblk.linux.Libc.closeQuietly(fds[i]);
                fds[i] = -1;
            }
        }
        fdCount = 0;
    }

    /** Frees the buffer; the message is unusable afterwards. Fds it still holds are not closed. */
    @Override
    public void close() {
        if (arena.scope().isAlive()) {
            arena.close();
        }
    }

    @Override
    public String toString() {
        return Request.name(request()) + "(flags=0x" + Integer.toHexString(flags()) + ", size=" + size() + ", fds=" + fdCount + ")";
    }
}
