package io.vhostblk.linux;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * eventfd(2) helpers. vhost-user kick and call fds are eventfds handed over by the frontend; we
 * also create our own (worker wake-ups, io_uring completion notification). Reads and writes use a
 * per-thread 8-byte buffer, so they allocate nothing.
 */
public final class EventFd {
    private static final ThreadLocal<MemorySegment> BUF =
            ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(JAVA_LONG));

    private EventFd() {
    }

    /** A new non-blocking, close-on-exec eventfd. */
    public static int create() {
        return Libc.eventfd(0, Libc.EFD_NONBLOCK | Libc.EFD_CLOEXEC);
    }

    /** Adds 1 to the counter (signals). Returns false if the fd is gone (EBADF) or full (EAGAIN). */
    public static boolean signal(int fd) {
        MemorySegment b = BUF.get();
        b.set(JAVA_LONG, 0, 1L);
        while (true) {
            long r = Libc.writeRaw(fd, b, 8);
            if (r == 8) {
                return true;
            }
            if (r != -Errno.EINTR) {
                return false;
            }
        }
    }

    /**
     * Reads and resets the counter. Returns the count, 0 if there was nothing (EAGAIN on a
     * non-blocking fd), or -errno on failure.
     */
    public static long drain(int fd) {
        MemorySegment b = BUF.get();
        while (true) {
            long r = Libc.readRaw(fd, b, 8);
            if (r == 8) {
                return b.get(JAVA_LONG, 0);
            }
            if (r == -Errno.EAGAIN) {
                return 0;
            }
            if (r != -Errno.EINTR) {
                return r < 0 ? r : -Errno.EIO;
            }
        }
    }
}
