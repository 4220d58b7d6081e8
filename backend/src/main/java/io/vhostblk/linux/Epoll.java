package io.vhostblk.linux;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED;

/**
 * An epoll instance owned by one thread. Events carry a 64-bit token chosen by the caller; the
 * result buffer is preallocated, so {@link #await} allocates nothing.
 *
 * <p>On x86_64 {@code struct epoll_event} is packed: {@code u32 events} then {@code u64 data} at
 * offset 4, 12 bytes per event.
 */
public final class Epoll implements AutoCloseable {
    public static final int EPOLLIN = 0x1;
    public static final int EPOLLERR = 0x8;
    public static final int EPOLLHUP = 0x10;
    static final int EPOLL_CTL_ADD = 1;
    static final int EPOLL_CTL_DEL = 2;
    static final int EPOLL_CTL_MOD = 3;
    static final int EPOLL_CLOEXEC = 0x80000;
    static final int EVENT_SIZE = 12;

    private static final class CreateFn {
        static final MethodHandle H = Libc.capture("epoll_create1", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    }
    private static final class CtlFn {
        static final MethodHandle H = Libc.capture("epoll_ctl",
                FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS));
    }
    private static final class WaitFn {
        static final MethodHandle H = Libc.capture("epoll_wait",
                FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
    }

    private final int epfd;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment events;
    private final MemorySegment ctlEvent;
    private final int capacity;

    public Epoll(int capacity) {
        this.capacity = capacity;
        this.events = arena.allocate((long) EVENT_SIZE * capacity, 8);
        this.ctlEvent = arena.allocate(EVENT_SIZE, 8);
        try {
            MemorySegment st = Libc.state();
            int fd = (int) CreateFn.H.invokeExact(st, EPOLL_CLOEXEC);
            if (fd < 0) {
                throw new ErrnoException("epoll_create1", Libc.errno(st));
            }
            this.epfd = fd;
        } catch (Throwable t) {
            arena.close();
            throw Libc.rethrow(t);
        }
    }

    public int fd() {
        return epfd;
    }

    public synchronized void add(int fd, int eventMask, long token) {
        ctl(EPOLL_CTL_ADD, fd, eventMask, token);
    }

    public synchronized void modify(int fd, int eventMask, long token) {
        ctl(EPOLL_CTL_MOD, fd, eventMask, token);
    }

    /** Removes {@code fd}; an fd already closed or never added is ignored. */
    public synchronized void remove(int fd) {
        try {
            ctl(EPOLL_CTL_DEL, fd, 0, 0);
        } catch (ErrnoException e) {
            if (e.errno() != Errno.ENOENT && e.errno() != Errno.EBADF) {
                throw e;
            }
        }
    }

    private void ctl(int op, int fd, int mask, long token) {
        ctlEvent.set(JAVA_INT, 0, mask);
        ctlEvent.set(JAVA_LONG_UNALIGNED, 4, token);
        try {
            MemorySegment st = Libc.state();
            int r = (int) CtlFn.H.invokeExact(st, epfd, op, fd, ctlEvent);
            if (r < 0) {
                throw new ErrnoException("epoll_ctl", Libc.errno(st), "fd " + fd);
            }
        } catch (Throwable t) {
            throw Libc.rethrow(t);
        }
    }

    /** Waits up to {@code timeoutMs} (-1 forever); returns the number of ready events (0 on EINTR/timeout). */
    public int await(int timeoutMs) {
        try {
            MemorySegment st = Libc.state();
            int r = (int) WaitFn.H.invokeExact(st, epfd, events, capacity, timeoutMs);
            if (r < 0) {
                int e = Libc.errno(st);
                if (e == Errno.EINTR) {
                    return 0;
                }
                throw new ErrnoException("epoll_wait", e);
            }
            return r;
        } catch (Throwable t) {
            throw Libc.rethrow(t);
        }
    }

    public long token(int i) {
        return events.get(JAVA_LONG_UNALIGNED, (long) i * EVENT_SIZE + 4);
    }

    public int mask(int i) {
        return events.get(JAVA_INT, (long) i * EVENT_SIZE);
    }

    @Override
    public void close() {
        Libc.closeQuietly(epfd);
        arena.close();
    }
}
