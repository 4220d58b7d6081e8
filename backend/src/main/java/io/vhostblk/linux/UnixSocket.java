package io.vhostblk.linux;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.nio.charset.StandardCharsets;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

/**
 * AF_UNIX stream sockets with file-descriptor passing (SCM_RIGHTS), which the JDK's own
 * UNIX-domain channels cannot do. vhost-user carries guest memory and eventfds this way.
 *
 * <p>An instance owns one connected socket fd. Not thread-safe: one control thread per
 * connection owns it.
 */
public final class UnixSocket implements AutoCloseable {
    static final int AF_UNIX = 1;
    static final int SOCK_STREAM = 1;
    static final int SOCK_CLOEXEC = 0x80000;
    static final int SOL_SOCKET = 1;
    static final int SCM_RIGHTS = 1;
    static final int SO_PEERCRED = 17;
    static final int MSG_CTRUNC = 0x8;
    static final int MSG_NOSIGNAL = 0x4000;
    static final int MSG_CMSG_CLOEXEC = 0x40000000;
    static final int SUN_PATH_MAX = 108;
    /** The most fds one vhost-user message carries (SET_MEM_TABLE: 8). */
    public static final int MAX_FDS = 8;

    private static final class SocketFn {
        static final MethodHandle H = Libc.capture("socket",
                FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT));
    }
    private static final class BindFn {
        static final MethodHandle H = Libc.capture("bind",
                FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));
    }
    private static final class ListenFn {
        static final MethodHandle H = Libc.capture("listen",
                FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    }
    private static final class Accept4Fn {
        static final MethodHandle H = Libc.capture("accept4",
                FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, ADDRESS, JAVA_INT));
    }
    private static final class ConnectFn {
        static final MethodHandle H = Libc.capture("connect",
                FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));
    }
    private static final class SendmsgFn {
        static final MethodHandle H = Libc.capture("sendmsg",
                FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT));
    }
    private static final class RecvmsgFn {
        static final MethodHandle H = Libc.capture("recvmsg",
                FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT));
    }
    private static final class ShutdownFn {
        static final MethodHandle H = Libc.capture("shutdown",
                FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    }
    private static final class GetsockoptFn {
        static final MethodHandle H = Libc.capture("getsockopt",
                FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, ADDRESS));
    }

    // struct msghdr (x86_64): name@0 namelen@8 iov@16 iovlen@24 control@32 controllen@40 flags@48; size 56
    private static final long MSG_IOV = 16;
    private static final long MSG_IOVLEN = 24;
    private static final long MSG_CONTROL = 32;
    private static final long MSG_CONTROLLEN = 40;
    private static final long MSG_FLAGS = 48;
    private static final int CMSG_HDR = 16;
    private static final int CMSG_SPACE_MAX = CMSG_HDR + MAX_FDS * 4;

    private final int fd;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment msghdr = arena.allocate(56, 8);
    private final MemorySegment iov = arena.allocate(16, 8);
    private final MemorySegment control = arena.allocate(CMSG_SPACE_MAX, 8);
    private volatile boolean closed;

    private UnixSocket(int fd) {
        this.fd = fd;
    }

    /** Wraps an already connected socket (the backend's {@code --fd N}). */
    public static UnixSocket adopt(int fd) {
        return new UnixSocket(fd);
    }

    public int fd() {
        return fd;
    }

    static MemorySegment sockaddr(Arena a, String path) {
        byte[] p = path.getBytes(StandardCharsets.UTF_8);
        if (p.length >= SUN_PATH_MAX) {
            throw new IllegalArgumentException("socket path longer than " + (SUN_PATH_MAX - 1) + " bytes: " + path);
        }
        MemorySegment sa = a.allocate(110, 8);
        sa.set(JAVA_SHORT, 0, (short) AF_UNIX);
        MemorySegment.copy(p, 0, sa, JAVA_BYTE_LAYOUT, 2, p.length);
        return sa;
    }

    private static final java.lang.foreign.ValueLayout.OfByte JAVA_BYTE_LAYOUT = java.lang.foreign.ValueLayout.JAVA_BYTE;

    static int newSocket() {
        try {
            MemorySegment st = Libc.state();
            int s = (int) SocketFn.H.invokeExact(st, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (s < 0) {
                throw new ErrnoException("socket", Libc.errno(st));
            }
            return s;
        } catch (Throwable t) {
            throw Libc.rethrow(t);
        }
    }

    /** Creates a listening socket at {@code path} (an existing stale socket file is replaced). */
    public static int listen(String path, int backlog) {
        int s = newSocket();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment sa = sockaddr(a, path);
            MemorySegment st = Libc.state();
            int r = (int) BindFn.H.invokeExact(st, s, sa, 110);
            if (r < 0 && Libc.errno(st) == Errno.EADDRINUSE) {
                if (isListening(path)) {
                    throw new ErrnoException("bind", Errno.EADDRINUSE, path + " (another process is listening there)");
                }
                Libc.unlinkIfExists(path);
                r = (int) BindFn.H.invokeExact(st, s, sa, 110);
            }
            if (r < 0) {
                throw new ErrnoException("bind", Libc.errno(st), path);
            }
            r = (int) ListenFn.H.invokeExact(st, s, backlog);
            if (r < 0) {
                throw new ErrnoException("listen", Libc.errno(st), path);
            }
            return s;
        } catch (Throwable t) {
            Libc.closeQuietly(s);
            throw Libc.rethrow(t);
        }
    }

    /** True when something accepts connections at {@code path}. */
    public static boolean isListening(String path) {
        try (UnixSocket s = connect(path)) {
            return s != null;
        } catch (ErrnoException e) {
            return false;
        }
    }

    /** Blocks until a client connects to {@code listenFd}; returns the connection. */
    public static UnixSocket accept(int listenFd) {
        try {
            while (true) {
                MemorySegment st = Libc.state();
                int c = (int) Accept4Fn.H.invokeExact(st, listenFd, MemorySegment.NULL, MemorySegment.NULL, SOCK_CLOEXEC);
                if (c >= 0) {
                    return new UnixSocket(c);
                }
                int e = Libc.errno(st);
                if (e != Errno.EINTR && e != Errno.ECONNRESET) {
                    throw new ErrnoException("accept", e);
                }
            }
        } catch (Throwable t) {
            throw Libc.rethrow(t);
        }
    }

    public static UnixSocket connect(String path) {
        int s = newSocket();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = Libc.state();
            int r = (int) ConnectFn.H.invokeExact(st, s, sockaddr(a, path), 110);
            if (r < 0) {
                throw new ErrnoException("connect", Libc.errno(st), path);
            }
            return new UnixSocket(s);
        } catch (Throwable t) {
            Libc.closeQuietly(s);
            throw Libc.rethrow(t);
        }
    }

    /** The peer's credentials (SO_PEERCRED): {pid, uid, gid}. */
    public int[] peerCredentials() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment cred = a.allocate(12, 4);
            MemorySegment len = a.allocate(JAVA_INT);
            len.set(JAVA_INT, 0, 12);
            MemorySegment st = Libc.state();
            int r = (int) GetsockoptFn.H.invokeExact(st, fd, SOL_SOCKET, SO_PEERCRED, cred, len);
            if (r < 0) {
                throw new ErrnoException("getsockopt(SO_PEERCRED)", Libc.errno(st));
            }
            return new int[] {cred.get(JAVA_INT, 0), cred.get(JAVA_INT, 4), cred.get(JAVA_INT, 8)};
        } catch (Throwable t) {
            throw Libc.rethrow(t);
        }
    }

    /**
     * Sends {@code len} bytes of {@code buf} with {@code fdCount} fds attached to the first byte.
     */
    public void send(MemorySegment buf, long len, int[] fds, int fdCount) {
        if (fdCount > MAX_FDS) {
            throw new IllegalArgumentException("at most " + MAX_FDS + " fds per message");
        }
        requireNative(buf, len);
        long done = 0;
        boolean first = true;
        while (done < len) {
            msghdr.fill((byte) 0);
            iov.set(JAVA_LONG, 0, buf.address() + done);
            iov.set(JAVA_LONG, 8, len - done);
            msghdr.set(JAVA_LONG, MSG_IOV, iov.address());
            msghdr.set(JAVA_LONG, MSG_IOVLEN, 1);
            if (first && fdCount > 0) {
                control.fill((byte) 0);
                control.set(JAVA_LONG, 0, CMSG_HDR + 4L * fdCount);
                control.set(JAVA_INT, 8, SOL_SOCKET);
                control.set(JAVA_INT, 12, SCM_RIGHTS);
                for (int i = 0; i < fdCount; i++) {
                    control.set(JAVA_INT, CMSG_HDR + 4L * i, fds[i]);
                }
                msghdr.set(JAVA_LONG, MSG_CONTROL, control.address());
                msghdr.set(JAVA_LONG, MSG_CONTROLLEN, CMSG_HDR + align8(4L * fdCount));
            }
            try {
                MemorySegment st = Libc.state();
                long r = (long) SendmsgFn.H.invokeExact(st, fd, msghdr, MSG_NOSIGNAL);
                if (r < 0) {
                    int e = Libc.errno(st);
                    if (e == Errno.EINTR) {
                        continue;
                    }
                    throw new ErrnoException("sendmsg", e);
                }
                done += r;
                first = false;
            } catch (Throwable t) {
                throw Libc.rethrow(t);
            }
        }
    }

    /** The kernel gets raw addresses: a heap segment's address() is not one. */
    private static void requireNative(MemorySegment buf, long len) {
        if (!buf.isNative() || len < 0 || len > buf.byteSize()) {
            throw new IllegalArgumentException("socket I/O needs a native segment of at least " + len + " bytes");
        }
    }

    private static long align8(long v) {
        return (v + 7) & ~7L;
    }

    /**
     * Receives exactly {@code len} bytes into {@code buf}, collecting any fds that arrive with them
     * into {@code fdsOut}. Returns the number of fds received, or -1 on a clean end of stream before
     * any byte. A short stream after some bytes, or more fds than {@code fdsOut} holds (the extra
     * ones are closed), throws.
     */
    public int receive(MemorySegment buf, long len, int[] fdsOut) {
        requireNative(buf, len);
        long done = 0;
        int nfds = 0;
        boolean overflow = false;
        while (done < len) {
            msghdr.fill((byte) 0);
            iov.set(JAVA_LONG, 0, buf.address() + done);
            iov.set(JAVA_LONG, 8, len - done);
            msghdr.set(JAVA_LONG, MSG_IOV, iov.address());
            msghdr.set(JAVA_LONG, MSG_IOVLEN, 1);
            msghdr.set(JAVA_LONG, MSG_CONTROL, control.address());
            msghdr.set(JAVA_LONG, MSG_CONTROLLEN, CMSG_SPACE_MAX);
            long r;
            try {
                MemorySegment st = Libc.state();
                r = (long) RecvmsgFn.H.invokeExact(st, fd, msghdr, MSG_CMSG_CLOEXEC);
                if (r < 0) {
                    int e = Libc.errno(st);
                    if (e == Errno.EINTR) {
                        continue;
                    }
                    closeAll(fdsOut, nfds);
                    throw new ErrnoException("recvmsg", e);
                }
            } catch (Throwable t) {
                throw Libc.rethrow(t);
            }
            long controllen = msghdr.get(JAVA_LONG, MSG_CONTROLLEN);
            long pos = 0;
            while (pos + CMSG_HDR <= controllen) {
                long cmsgLen = control.get(JAVA_LONG, pos);
                int level = control.get(JAVA_INT, pos + 8);
                int type = control.get(JAVA_INT, pos + 12);
                if (cmsgLen < CMSG_HDR || pos + cmsgLen > controllen) {
                    break;
                }
                if (level == SOL_SOCKET && type == SCM_RIGHTS) {
                    int n = (int) ((cmsgLen - CMSG_HDR) / 4);
                    for (int i = 0; i < n; i++) {
                        int got = control.get(JAVA_INT, pos + CMSG_HDR + 4L * i);
                        if (nfds < fdsOut.length) {
                            fdsOut[nfds++] = got;
                        } else {
                            Libc.closeQuietly(got);
                            overflow = true;
                        }
                    }
                }
                pos += align8(cmsgLen);
            }
            if ((msghdr.get(JAVA_INT, MSG_FLAGS) & MSG_CTRUNC) != 0) {
                overflow = true;
            }
            if (r == 0) {
                if (done == 0 && nfds == 0) {
                    return -1;
                }
                closeAll(fdsOut, nfds);
                throw new ErrnoException("recvmsg", Errno.ECONNRESET, "(stream ended inside a message)");
            }
            done += r;
        }
        if (overflow) {
            closeAll(fdsOut, nfds);
            throw new ErrnoException("recvmsg", Errno.EINVAL, "(more file descriptors than a message may carry)");
        }
        return nfds;
    }

    private static void closeAll(int[] fds, int n) {
        for (int i = 0; i < n; i++) {
            Libc.closeQuietly(fds[i]);
            fds[i] = -1;
        }
    }

    /** shutdown(2) of a listening socket: wakes a thread blocked in {@link #accept}. */
    public static void shutdownListener(int listenFd) {
        try {
            int ignored = (int) ShutdownFn.H.invokeExact(Libc.state(), listenFd, 2);
        } catch (Throwable t) {
            throw Libc.rethrow(t);
        }
    }

    /** Shuts down both directions, waking a thread blocked in {@link #receive}. */
    public void shutdown() {
        try {
            int ignored = (int) ShutdownFn.H.invokeExact(Libc.state(), fd, 2);
        } catch (Throwable t) {
            throw Libc.rethrow(t);
        }
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            Libc.closeQuietly(fd);
            arena.close();
        }
    }
}
