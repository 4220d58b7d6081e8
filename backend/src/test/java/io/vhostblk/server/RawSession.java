package io.vhostblk.server;

import io.vhostblk.frontend.VhostUserFrontend;
import io.vhostblk.linux.ErrnoException;
import io.vhostblk.linux.EventFd;
import io.vhostblk.linux.Libc;
import io.vhostblk.vhostuser.Message;
import io.vhostblk.vhostuser.ProtocolException;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.ArrayList;
import java.util.List;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED;

/**
 * A hostile frontend for malformed-session tests and the message fuzzer: sends any header (the
 * announced size need not match the payload) with any fds, collects whatever the backend
 * answers, and half-closes the socket to see whether the backend ends the session by itself.
 * Owns the fds it creates ({@link #eventFd}, {@link #memFd}) and closes them with the session.
 */
public final class RawSession implements AutoCloseable {
    private static final MethodHandle SHUTDOWN = Linker.nativeLinker().downcallHandle(
            Linker.nativeLinker().defaultLookup().find("shutdown").orElseThrow(),
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    private static final int SHUT_WR = 1;
    private static final MethodHandle SENDMSG = Linker.nativeLinker().downcallHandle(
            Linker.nativeLinker().defaultLookup().find("sendmsg").orElseThrow(),
            FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT));
    private static final int MSG_NOSIGNAL = 0x4000;

    /** A reply as received: request code, flags, payload size and the first u64 of the payload (0 if shorter). */
    public record Reply(int request, int flags, int size, long u64) {
        public boolean isReply() {
            return (flags & Message.FLAG_REPLY) != 0 && (flags & Message.FLAG_VERSION_MASK) == Message.VERSION;
        }
    }

    private final VhostUserFrontend fe;
    private final List<Integer> ownFds = new ArrayList<>();
    private final List<Reply> replies = new ArrayList<>();
    private boolean closedByPeer;

    private RawSession(VhostUserFrontend fe) {
        this.fe = fe;
    }

    public static RawSession connect(String path) {
        return new RawSession(VhostUserFrontend.connect(path, 5_000));
    }

    public VhostUserFrontend frontend() {
        return fe;
    }

    /** A new eventfd owned by this session. */
    public int eventFd() {
        int fd = EventFd.create();
        ownFds.add(fd);
        return fd;
    }

    /** A new memfd of {@code size} bytes owned by this session, with {@code content} at offset 0. */
    public int memFd(long size, byte[] content) {
        int fd = Libc.memfdCreate("raw-session", Libc.MFD_CLOEXEC);
        ownFds.add(fd);
        Libc.ftruncate(fd, size);
        if (content.length > 0 && size > 0) {
            MemorySegment m = Libc.mmap(size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, fd, 0);
            try {
                MemorySegment.copy(MemorySegment.ofArray(content), 0, m, 0, Math.min(size, content.length));
            } finally {
                Libc.munmap(m);
            }
        }
        return fd;
    }

    /**
     * Sends a 12-byte header announcing {@code announcedSize} payload bytes, then {@code payload}
     * (whatever its length), with {@code fds} attached. Returns false if the backend has closed the
     * connection (the send failed).
     */
    public boolean send(int request, int flags, int announcedSize, byte[] payload, int... fds) {
        byte[] b = frame(request, flags, announcedSize, payload);
        try {
            fe.sendBytes(b, fds);
            return true;
        } catch (ErrnoException e) {
            closedByPeer = true;
            return false;
        }
    }

    /**
     * Sends {@code bytes} in one sendmsg with any number of fds in one SCM_RIGHTS message (the
     * frontend's own send stops at the 8 a vhost-user message may carry). Returns false if the
     * backend has closed the connection.
     */
    public boolean sendWithManyFds(byte[] bytes, int... fds) {
        try (java.lang.foreign.Arena a = java.lang.foreign.Arena.ofConfined()) {
            MemorySegment buf = a.allocate(bytes.length);
            MemorySegment.copy(MemorySegment.ofArray(bytes), 0, buf, 0, bytes.length);
            MemorySegment iov = a.allocate(16, 8);
            iov.set(JAVA_LONG, 0, buf.address());
            iov.set(JAVA_LONG, 8, bytes.length);
            long cmsgLen = 16 + 4L * fds.length;
            MemorySegment control = a.allocate((cmsgLen + 7) & ~7L, 8);
            control.set(JAVA_LONG, 0, cmsgLen);
            control.set(JAVA_INT, 8, 1);   // SOL_SOCKET
            control.set(JAVA_INT, 12, 1);  // SCM_RIGHTS
            for (int i = 0; i < fds.length; i++) {
                control.set(JAVA_INT, 16 + 4L * i, fds[i]);
            }
            MemorySegment msghdr = a.allocate(56, 8);
            msghdr.set(JAVA_LONG, 16, iov.address());
            msghdr.set(JAVA_LONG, 24, 1);
            msghdr.set(JAVA_LONG, 32, control.address());
            msghdr.set(JAVA_LONG, 40, control.byteSize());
            long r = (long) SENDMSG.invokeExact(fe.socket().fd(), msghdr, MSG_NOSIGNAL);
            if (r < 0) {
                closedByPeer = true;
                return false;
            }
            if (r != bytes.length) {
                throw new AssertionError("short sendmsg: " + r + " of " + bytes.length);
            }
            return true;
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }

    /** The 12-byte header plus payload of a message, as bytes. */
    public static byte[] frame(int request, int flags, int announcedSize, byte[] payload) {
        byte[] b = new byte[Message.HEADER_SIZE + payload.length];
        MemorySegment s = MemorySegment.ofArray(b);
        s.set(JAVA_INT_UNALIGNED, 0, request);
        s.set(JAVA_INT_UNALIGNED, 4, flags);
        s.set(JAVA_INT_UNALIGNED, 8, announcedSize);
        System.arraycopy(payload, 0, b, Message.HEADER_SIZE, payload.length);
        return b;
    }

    /** Sends a well-formed message (version 1 plus {@code flags}). */
    public boolean send(int request, int flags, byte[] payload, int... fds) {
        return send(request, Message.VERSION | flags, payload.length, payload, fds);
    }

    /**
     * Collects replies that arrive within {@code timeoutMs} until none is pending; returns false
     * when the backend closed the connection meanwhile.
     */
    public boolean poll(int timeoutMs) {
        while (!closedByPeer) {
            Message m;
            try {
                m = fe.receive(timeoutMs);
            } catch (ProtocolException e) {
                if (e.getMessage() != null && e.getMessage().startsWith("no message from the backend")) {
                    return true;
                }
                closedByPeer = true;
                break;
            } catch (ErrnoException e) {
                closedByPeer = true;
                break;
            }
            if (m == null) {
                closedByPeer = true;
                break;
            }
            replies.add(new Reply(m.request(), m.flags(), m.size(), m.size() >= 8 ? m.u64(0) : 0));
            timeoutMs = 0;
        }
        return false;
    }

    /**
     * Sends {@code request} and waits up to {@code timeoutMs} for one more reply; returns it, or
     * null if the backend closed the connection instead.
     */
    public Reply call(int request, int flags, byte[] payload, int timeoutMs, int... fds) {
        int before = replies.size();
        if (!send(request, flags, payload, fds)) {
            return null;
        }
        long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
        while (replies.size() == before && !closedByPeer) {
            int left = (int) Math.max(0, (deadline - System.nanoTime()) / 1_000_000L);
            poll(left);
            if (System.nanoTime() > deadline) {
                break;
            }
        }
        return replies.size() > before ? replies.get(before) : null;
    }

    /**
     * Half-closes our side (the backend reads end of stream) and reads until the backend closes
     * the connection. Returns false if it has not closed it within {@code timeoutMs}.
     */
    public boolean finish(int timeoutMs) {
        try {
            int ignored = (int) SHUTDOWN.invokeExact(fe.socket().fd(), SHUT_WR);
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
        long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
        while (!closedByPeer) {
            int left = (int) ((deadline - System.nanoTime()) / 1_000_000L);
            if (left <= 0) {
                return false;
            }
            poll(left);
        }
        return true;
    }

    /** True once the backend has closed the connection (seen by a send, poll or finish). */
    public boolean closedByPeer() {
        return closedByPeer;
    }

    /** Waits up to {@code timeoutMs} for the backend to close the connection (without half-closing). */
    public boolean awaitClosed(int timeoutMs) {
        long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
        while (!closedByPeer) {
            int left = (int) ((deadline - System.nanoTime()) / 1_000_000L);
            if (left <= 0) {
                return false;
            }
            poll(left);
        }
        return true;
    }

    public List<Reply> replies() {
        return replies;
    }

    @Override
    public void close() {
        try {
            fe.close();
        } finally {
            for (int fd : ownFds) {
                Libc.closeQuietly(fd);
            }
            ownFds.clear();
        }
    }
}
