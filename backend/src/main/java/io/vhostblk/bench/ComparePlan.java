package io.vhostblk.bench;

import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * What one comparison run measures: the workloads (rows) and, per workload, the systems under
 * test, in the order they are run.
 *
 * <p>Iodepth is per queue for the frontend and per job for fio: a workload "qd128 q2" keeps 128
 * requests in flight on each of 2 virtqueues (one frontend thread each) and runs fio with
 * {@code numjobs=2 iodepth=128}, 256 in flight in total, as a 2-queue guest would.
 */
final class ComparePlan {
    /** Block size of every workload. */
    static final int BS = 4096;
    /** Queues offered by every backend process (a frontend may use fewer). */
    static final int BACKEND_QUEUES = 2;
    /** Backend busy-poll time of the latency rows. */
    static final int POLL_US = 50;

    enum Media {
        DISK("disk", "file on the local disk, O_DIRECT"),
        RAM("ram", "file in /dev/shm (RAM disk), O_DIRECT");

        final String id;
        final String description;

        Media(String id, String description) {
            this.id = id;
            this.description = description;
        }
    }

    enum Kind {
        HOST("host"), QSD("qsd"), VHOSTBLK("vhostblk");

        final String id;

        Kind(String id) {
            this.id = id;
        }

        static Kind parse(String s) {
            for (Kind k : values()) {
                if (k.id.equals(s.trim().toLowerCase(Locale.ROOT))) {
                    return k;
                }
            }
            return null;
        }
    }

    /**
     * One row: 4k random I/O on a medium. {@code poll} rows run the frontend with --poll and
     * vhostblk with --poll-us (the latency row).
     */
    record Workload(Media media, String rw, int iodepth, int queues, boolean poll) {
        String id() {
            return media.id + "-" + rw + "-qd" + iodepth + "-q" + queues + (poll ? "-poll" : "");
        }

        String label() {
            return media.id + " " + rw + " qd" + iodepth + " q" + queues + (poll ? " poll" : "");
        }
    }

    /**
     * A system under test. For {@link Kind#HOST} and {@link Kind#QSD} engine is null and
     * workers 0; {@code pollUs} is the vhostblk --poll-us.
     */
    record SystemSpec(Kind kind, String engine, int workers, int pollUs) {
        static final SystemSpec HOST = new SystemSpec(Kind.HOST, null, 0, 0);
        static final SystemSpec QSD = new SystemSpec(Kind.QSD, null, 0, 0);

        static SystemSpec vhostblk(String engine, int workers, int pollUs) {
            return new SystemSpec(Kind.VHOSTBLK, engine, workers, pollUs);
        }

        String label() {
            return switch (kind) {
                case HOST -> "host-fio";
                case QSD -> "qsd";
                case VHOSTBLK -> "vhostblk-" + engine + "-w" + workers + (pollUs > 0 ? "-poll" + pollUs : "");
            };
        }

        /** A backend process serves this system (not host fio). */
        boolean hasBackend() {
            return kind != Kind.HOST;
        }
    }

    /** One row and the systems measured on it, in base order (rotated per repetition). */
    record Cell(Workload workload, List<SystemSpec> systems) {
    }

    /** A long-lived backend process: one per medium and system, reused by every row that needs it. */
    record BackendKey(Media media, SystemSpec spec) {
    }

    final List<Cell> cells;

    private ComparePlan(List<Cell> cells) {
        this.cells = List.copyOf(cells);
    }

    /**
     * The matrix of issue 3. Full: both media; randread and randwrite at iodepth 128 on 1 and 2
     * queues and at iodepth 1 on 1 queue; vhostblk with both engines, 1 worker, and 1 and 2
     * workers on 2 queues; then the RAM-disk iodepth-1 randread with polling. Quick: RAM disk,
     * iodepth 128, 1 queue.
     */
    static ComparePlan build(boolean quick, Set<Kind> only) {
        List<Cell> cells = new ArrayList<>();
        List<Media> media = quick ? List.of(Media.RAM) : List.of(Media.DISK, Media.RAM);
        for (Media m : media) {
            for (String rw : List.of("randread", "randwrite")) {
                cells.add(cell(new Workload(m, rw, 128, 1, false), only));
                if (!quick) {
                    cells.add(cell(new Workload(m, rw, 128, 2, false), only));
                    cells.add(cell(new Workload(m, rw, 1, 1, false), only));
                }
            }
        }
        if (!quick) {
            cells.add(cell(new Workload(Media.RAM, "randread", 1, 1, true), only));
        }
        cells.removeIf(c -> c.systems().isEmpty());
        return new ComparePlan(cells);
    }

    private static Cell cell(Workload w, Set<Kind> only) {
        List<SystemSpec> s = new ArrayList<>();
        if (only.contains(Kind.HOST) && !w.poll()) {
            s.add(SystemSpec.HOST);
        }
        if (only.contains(Kind.QSD)) {
            s.add(SystemSpec.QSD);
        }
        if (only.contains(Kind.VHOSTBLK)) {
            int pollUs = w.poll() ? POLL_US : 0;
            for (String engine : List.of("io_uring", "threads")) {
                s.add(SystemSpec.vhostblk(engine, 1, pollUs));
                if (w.queues() >= 2) {
                    s.add(SystemSpec.vhostblk(engine, 2, pollUs));
                }
            }
        }
        return new Cell(w, s);
    }

    static Set<Kind> allKinds() {
        return EnumSet.allOf(Kind.class);
    }

    /** The systems of cell {@code c} in the order of repetition {@code rep}: rotated by rep. */
    static List<SystemSpec> order(Cell c, int rep) {
        List<SystemSpec> s = c.systems();
        int n = s.size();
        List<SystemSpec> o = new ArrayList<>(n);
        for (int k = 0; k < n; k++) {
            o.add(s.get((k + rep) % n));
        }
        return o;
    }

    /** Index of the last cell using the backend, so it can be stopped right after. */
    int lastUse(BackendKey key) {
        int last = -1;
        for (int k = 0; k < cells.size(); k++) {
            Cell c = cells.get(k);
            if (c.workload().media() == key.media() && c.systems().contains(key.spec())) {
                last = k;
            }
        }
        return last;
    }

    /** Index of the last cell on the medium, so its file can be deleted right after. */
    int lastUse(Media m) {
        int last = -1;
        for (int k = 0; k < cells.size(); k++) {
            if (cells.get(k).workload().media() == m) {
                last = k;
            }
        }
        return last;
    }

    int runs(int reps) {
        return cells.stream().mapToInt(c -> c.systems().size()).sum() * reps;
    }

    /** Distinct backend processes the plan starts. */
    List<BackendKey> backends() {
        List<BackendKey> keys = new ArrayList<>();
        for (Cell c : cells) {
            for (SystemSpec s : c.systems()) {
                BackendKey k = new BackendKey(c.workload().media(), s);
                if (s.hasBackend() && !keys.contains(k)) {
                    keys.add(k);
                }
            }
        }
        return keys;
    }

    List<Media> media() {
        return cells.stream().map(c -> c.workload().media()).distinct().toList();
    }
}
