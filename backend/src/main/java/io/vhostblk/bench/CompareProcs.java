package io.vhostblk.bench;

import java.io.IOException;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * Child processes and scratch files of a comparison run, and what /proc says about processes.
 * Everything registered here is stopped (SIGTERM, then SIGKILL) and deleted by {@link #cleanup()},
 * which runs at the end of the run and from a shutdown hook on Ctrl-C / SIGTERM.
 */
final class CompareProcs {
    /** Clock ticks per second of /proc/PID/stat utime and stime (sysconf(_SC_CLK_TCK)). */
    static final long CLK_TCK = clockTicks();

    private final List<Process> children = new ArrayList<>();
    private final List<Path> scratch = new ArrayList<>();
    private volatile boolean closing;

    /** Starts and registers a child; refuses once cleanup has begun (a Ctrl-C during a spawn). */
    synchronized Process start(ProcessBuilder pb) throws IOException {
        if (closing) {
            throw new IOException("shutting down");
        }
        Process p = pb.start();
        children.add(p);
        return p;
    }

    /** Stops one child: SIGTERM to it and its descendants, SIGKILL after {@code graceMs}. */
    void stop(Process p, long graceMs) {
        terminate(p, graceMs);
        synchronized (this) {
            children.remove(p);
        }
    }

    /** A file or directory to delete (recursively) at cleanup. */
    synchronized void scratch(Path p) {
        scratch.add(p);
    }

    /** Deletes a scratch path now. */
    void delete(Path p) {
        deleteTree(p);
        synchronized (this) {
            scratch.remove(p);
        }
    }

    boolean closing() {
        return closing;
    }

    /** Stops every child and deletes every scratch path. Idempotent. */
    void cleanup() {
        List<Process> ps;
        List<Path> paths;
        synchronized (this) {
            closing = true;
            ps = new ArrayList<>(children);
            paths = new ArrayList<>(scratch);
            children.clear();
            scratch.clear();
        }
        // SIGTERM everything first, so the backends shut down in parallel
        for (Process p : ps) {
            p.descendants().forEach(ProcessHandle::destroy);
            p.destroy();
        }
        for (Process p : ps) {
            terminate(p, 5_000);
        }
        for (Path p : paths.reversed()) {
            deleteTree(p);
        }
    }

    private static void terminate(Process p, long graceMs) {
        List<ProcessHandle> desc = p.descendants().toList();
        desc.forEach(ProcessHandle::destroy);
        p.destroy();
        try {
            if (!p.waitFor(graceMs, TimeUnit.MILLISECONDS)) {
                desc.forEach(ProcessHandle::destroyForcibly);
                p.descendants().forEach(ProcessHandle::destroyForcibly);
                p.destroyForcibly();
                p.waitFor(5, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            p.destroyForcibly();
            Thread.currentThread().interrupt();
        }
        desc.stream().filter(ProcessHandle::isAlive).forEach(ProcessHandle::destroyForcibly);
    }

    static void deleteTree(Path p) {
        if (!Files.exists(p, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        try (Stream<Path> s = Files.walk(p)) {
            for (Path x : s.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(x);
            }
        } catch (IOException | java.io.UncheckedIOException e) {
            System.err.println("vhostblk-compare: could not delete " + p + ": " + e.getMessage());
        }
    }

    // ------------------------------------------------------------------ /proc

    /** utime + stime of a process (all its threads, live and exited), in clock ticks; -1 if gone. */
    static long cpuTicks(long pid) {
        String stat;
        try {
            stat = Files.readString(Path.of("/proc/" + pid + "/stat"));
        } catch (IOException e) {
            return -1;
        }
        return parseCpuTicks(stat);
    }

    /** utime (field 14) + stime (15) from a /proc/PID/stat line; the comm field may hold spaces. */
    static long parseCpuTicks(String stat) {
        int close = stat.lastIndexOf(')');
        String[] f = stat.substring(close + 2).trim().split("\\s+");
        // f[0] is field 3 (state): field n is f[n - 3]
        return Long.parseLong(f[14 - 3]) + Long.parseLong(f[15 - 3]);
    }

    /** VmRSS in KiB, -1 if unknown. */
    static long rssKib(long pid) {
        try {
            for (String l : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
                if (l.startsWith("VmRSS:")) {
                    return Long.parseLong(l.substring(6).trim().split("\\s+")[0]);
                }
            }
        } catch (IOException | RuntimeException e) {
            return -1;
        }
        return -1;
    }

    /**
     * Whether a UNIX socket is listening on {@code path}: its line in /proc/net/unix has the
     * __SO_ACCEPTCON flag (0x10000). From then on a connect() succeeds (the kernel queues it),
     * and we never have to connect, which would be the backend's first frontend.
     */
    static boolean listening(Path path) {
        if (!Files.exists(path)) {
            return false;
        }
        String want = path.toAbsolutePath().toString();
        try (Stream<String> lines = Files.lines(Path.of("/proc/net/unix"))) {
            return lines.anyMatch(l -> isListeningLine(l, want));
        } catch (IOException | java.io.UncheckedIOException e) {
            return false;
        }
    }

    static boolean isListeningLine(String line, String path) {
        if (!line.endsWith(" " + path)) {
            return false;
        }
        String[] f = line.trim().split("\\s+");
        // Num RefCount Protocol Flags Type St Inode Path
        if (f.length < 8) {
            return false;
        }
        try {
            return (Long.parseLong(f[3], 16) & 0x10000) != 0;
        } catch (NumberFormatException e) {
            return false;
        }
    }

    static String loadavg() {
        try {
            String[] f = Files.readString(Path.of("/proc/loadavg")).trim().split("\\s+");
            return f[0] + " " + f[1] + " " + f[2];
        } catch (IOException | RuntimeException e) {
            return "?";
        }
    }

    private static long clockTicks() {
        try {
            Linker l = Linker.nativeLinker();
            MethodHandle sysconf = l.downcallHandle(l.defaultLookup().find("sysconf").orElseThrow(),
                    FunctionDescriptor.of(JAVA_LONG, JAVA_INT));
            long t = (long) sysconf.invokeExact(2); // _SC_CLK_TCK
            return t > 0 ? t : 100;
        } catch (Throwable t) {
            return 100;
        }
    }
}
