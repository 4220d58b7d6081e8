package io.vhostblk.bench;

/** Parsed command line of vhostblk-bench. */
record BenchConfig(String socket, Workload rw, int mixReadPct, int bs, int iodepth, int queues, double runtimeS,
                   double rampS, long size, boolean indirect, boolean eventIdx, boolean poll, boolean verify,
                   boolean json, int queueSize, int segments, boolean marks, long maxIos, long rampIos) {

    enum Workload {
        RANDREAD("randread", true, false), RANDWRITE("randwrite", true, false), READ("read", false, false),
        WRITE("write", false, false), RANDRW("randrw", true, true);

        final String name;
        final boolean random;
        final boolean mixed;

        Workload(String name, boolean random, boolean mixed) {
            this.name = name;
            this.random = random;
            this.mixed = mixed;
        }

        static Workload parse(String s) {
            for (Workload w : values()) {
                if (w.name.equals(s)) {
                    return w;
                }
            }
            return null;
        }

        /** Share of reads in percent when not mixed. */
        int readPct() {
            return this == RANDREAD || this == READ ? 100 : 0;
        }
    }

    /**
     * Queue {@code q}'s share of a request count split evenly over the queues (the first queues
     * take the remainder); {@code Long.MAX_VALUE} when {@code total} is 0 (no limit).
     */
    long share(long total, int q) {
        if (total <= 0) {
            return Long.MAX_VALUE;
        }
        return total / queues + (q < total % queues ? 1 : 0);
    }

    /** Ring descriptors one request takes. */
    int descriptorsPerRequest() {
        return indirect ? 1 : 2 + segments;
    }
}
