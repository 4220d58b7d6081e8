package io.vhostblk.bench;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * User and system CPU time of this process or the calling thread, from getrusage(2) (µs
 * resolution, unlike the 10 ms ticks of /proc/self/stat).
 */
final class CpuUsage {
    static final int RUSAGE_SELF = 0;
    static final int RUSAGE_THREAD = 1;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final MethodHandle GETRUSAGE = LINKER.downcallHandle(
            LINKER.defaultLookup().find("getrusage").orElseThrow(),
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS));

    /** User and system CPU nanoseconds. */
    record Sample(long userNanos, long sysNanos) {
        long totalNanos() {
            return userNanos + sysNanos;
        }

        Sample minus(Sample o) {
            return new Sample(userNanos - o.userNanos, sysNanos - o.sysNanos);
        }
    }

    private CpuUsage() {
    }

    static Sample process() {
        return sample(RUSAGE_SELF);
    }

    static Sample thread() {
        return sample(RUSAGE_THREAD);
    }

    private static Sample sample(int who) {
        // struct rusage starts with struct timeval ru_utime, ru_stime (x86_64: 2 x 16 bytes); 144 bytes in all
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ru = a.allocate(144, 8);
            int r = (int) GETRUSAGE.invokeExact(who, ru);
            if (r != 0) {
                return new Sample(0, 0);
            }
            long user = ru.get(JAVA_LONG, 0) * 1_000_000_000L + ru.get(JAVA_LONG, 8) * 1_000L;
            long sys = ru.get(JAVA_LONG, 16) * 1_000_000_000L + ru.get(JAVA_LONG, 24) * 1_000L;
            return new Sample(user, sys);
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }
}
