package io.vhostblk.fuzz;

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;

/**
 * Counts a fuzz target's executions and prints one summary line when the class is done, straight
 * to the process's stderr (past surefire's capture, so CI logs show it).
 */
final class FuzzStats {
    private final String target;
    private final long start = System.nanoTime();
    private long executions;

    FuzzStats(String target) {
        this.target = target;
    }

    void count() {
        executions++;
    }

    long executions() {
        return executions;
    }

    void report() {
        double s = (System.nanoTime() - start) / 1e9;
        @SuppressWarnings("resource")
        PrintStream err = new PrintStream(new FileOutputStream(FileDescriptor.err), true);
        err.printf("[fuzz] %s: %d executions in %.1f s (%.0f/s), %s mode%n", target, executions, s, executions / s,
                fuzzing() ? "fuzzing" : "regression");
    }

    /** Jazzer's own rule: fuzzing mode when JAZZER_FUZZ is set to a truthy value. */
    static boolean fuzzing() {
        String v = System.getenv("JAZZER_FUZZ");
        return v != null && !v.isEmpty() && !v.equals("0") && !v.equalsIgnoreCase("false") && !v.equalsIgnoreCase("no");
    }
}
