package io.vhostblk.it;

import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Processes the harness started (backends, QEMU). If the test JVM is shut down while they run
 * (surefire timeout, Ctrl-C), a shutdown hook kills them so no orphan keeps the CPU busy.
 */
final class ChildProcesses {
    private static final Set<Process> LIVE = ConcurrentHashMap.newKeySet();

    static {
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            for (Process p : LIVE) {
                p.descendants().forEach(ProcessHandle::destroyForcibly);
                p.destroyForcibly();
            }
        }, "kill-test-children"));
    }

    private ChildProcesses() {}

    static Process register(Process p) {
        LIVE.add(p);
        return p;
    }

    static void unregister(Process p) {
        LIVE.remove(p);
    }
}
