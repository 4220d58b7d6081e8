package io.vhostblk.frontend;

import io.vhostblk.linux.Errno;
import io.vhostblk.linux.ErrnoException;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

/**
 * poll(2) on one fd, for the frontend's timed waits (a reply on the vhost-user socket, a call
 * eventfd). Kept in this package so the shared {@code linux} bindings stay untouched. Buffers are
 * per thread, so a wait allocates nothing.
 */
final class Poll {
    static final short POLLIN = 0x1;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final StructLayout CAPTURE_LAYOUT = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CAPTURE_LAYOUT.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    private static final MethodHandle POLL = LINKER.downcallHandle(
            LINKER.defaultLookup().find("poll").orElseThrow(),
            FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT),
            Linker.Option.captureCallState("errno"));

    /** struct pollfd { int fd; short events; short revents; } followed by the errno capture state. */
    private static final ThreadLocal<MemorySegment[]> BUFS = ThreadLocal.withInitial(() -> {
        Arena a = Arena.ofAuto();
        return new MemorySegment[] {a.allocate(8, 8), a.allocate(CAPTURE_LAYOUT)};
    });

    private Poll() {
    }

    /**
     * Waits until {@code fd} is readable or {@code timeoutMs} passes (-1 = forever). Returns true
     * when readable (or in error/hang-up state, which a following read reports), false on timeout.
     */
    static boolean readable(int fd, int timeoutMs) {
        MemorySegment[] b = BUFS.get();
        MemorySegment pfd = b[0];
        long deadline = timeoutMs < 0 ? Long.MAX_VALUE : System.nanoTime() + timeoutMs * 1_000_000L;
        while (true) {
            pfd.set(JAVA_INT, 0, fd);
            pfd.set(JAVA_SHORT, 4, POLLIN);
            pfd.set(JAVA_SHORT, 6, (short) 0);
            int wait = timeoutMs < 0 ? -1 : (int) Math.max(0, (deadline - System.nanoTime()) / 1_000_000L);
            int r;
            try {
                r = (int) POLL.invokeExact(b[1], pfd, 1L, wait);
            } catch (Throwable t) {
                throw new IllegalStateException(t);
            }
            if (r > 0) {
                return true;
            }
            if (r == 0) {
                if (timeoutMs >= 0 && System.nanoTime() >= deadline) {
                    return false;
                }
                continue;
            }
            int e = (int) ERRNO.get(b[1], 0L);
            if (e != Errno.EINTR) {
                throw new ErrnoException("poll", e);
            }
        }
    }
}
