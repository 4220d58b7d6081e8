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

    /** Virtual size of the new qcow2 image of the allocating row (qemu-img create, 64 KiB clusters). */
    static final long QCOW2_NEW_SIZE = 32L << 30;
    /**
     * Writes one run of the allocating row may submit in all, ramp included (vhostblk-bench
     * --max-ios): each allocates a 64 KiB cluster, so the image grows by at most 2 GiB of RAM
     * disk, and the writes land on 1/16 of the image's 524288 clusters — about 97 % of them
     * allocate a cluster (the rest hit one allocated earlier in the run).
     */
    static final long QCOW2_NEW_MAX_IOS = 32_768;
    /** The allocating row's ramp ends after --ramp seconds or this many writes, whichever first. */
    static final long QCOW2_NEW_RAMP_IOS = QCOW2_NEW_MAX_IOS / 4;
    /** Cluster size of both qcow2 images (qemu-img's default, passed explicitly). */
    static final int QCOW2_CLUSTER = 64 << 10;

    enum Media {
        DISK("disk", false, false, "raw file on the local disk, O_DIRECT"),
        RAM("ram", false, false, "raw file in /dev/shm (RAM disk), O_DIRECT"),
        QCOW2("qcow2", true, false, "qcow2 image in /dev/shm with every cluster allocated and written, one copy per backend"),
        QCOW2_NEW("qcow2-new", true, true, "empty qcow2 image in /dev/shm, created anew before every run: writes allocate clusters");

        final String id;
        final boolean qcow2;
        /** The image is created anew (empty) before every run, so the backend is started for every run. */
        final boolean fresh;
        final String description;

        Media(String id, boolean qcow2, boolean fresh, String description) {
            this.id = id;
            this.qcow2 = qcow2;
            this.fresh = fresh;
            this.description = description;
        }

        /** The raw medium the same workload is compared with (qcow2 with allocated clusters: the RAM disk), or null. */
        Media rawTwin() {
            return this == QCOW2 ? RAM : null;
        }

        /** Raw files: the media of issue 3's targets. */
        static List<Media> raw() {
            return List.of(DISK, RAM);
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
     * The matrix of issue 3, then the qcow2 rows of issue 4. Full: both raw media; randread and
     * randwrite at iodepth 128 on 1 and 2 queues and at iodepth 1 on 1 queue; vhostblk with both
     * engines, 1 worker, and 1 and 2 workers on 2 queues; then the RAM-disk iodepth-1 randread
     * with polling; then qcow2 at iodepth 128 on 1 queue: randread and randwrite on allocated
     * clusters, and randwrite on a new image (allocating). Quick: RAM disk, iodepth 128, 1 queue.
     */
    static ComparePlan build(boolean quick, Set<Kind> only) {
        return build(quick, only, List.of());
    }

    /** As {@link #build(boolean, Set)}, keeping only the rows whose id matches one of {@code rows} (globs; empty: all). */
    static ComparePlan build(boolean quick, Set<Kind> only, List<String> rows) {
        List<Cell> cells = new ArrayList<>();
        List<Media> media = quick ? List.of(Media.RAM) : Media.raw();
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
            cells.add(cell(new Workload(Media.QCOW2, "randread", 128, 1, false), only));
            cells.add(cell(new Workload(Media.QCOW2, "randwrite", 128, 1, false), only));
            cells.add(cell(new Workload(Media.QCOW2_NEW, "randwrite", 128, 1, false), only));
        }
        if (!rows.isEmpty()) {
            List<java.util.regex.Pattern> p = rows.stream().map(ComparePlan::glob).toList();
            cells.removeIf(c -> p.stream().noneMatch(x -> x.matcher(c.workload().id()).matches()));
        }
        cells.removeIf(c -> c.systems().isEmpty());
        return new ComparePlan(cells);
    }

    /** A glob over row ids ({@code *} any characters, {@code ?} one) as a pattern. */
    static java.util.regex.Pattern glob(String g) {
        StringBuilder b = new StringBuilder();
        for (char ch : g.trim().toCharArray()) {
            switch (ch) {
                case '*' -> b.append(".*");
                case '?' -> b.append('.');
                default -> b.append(java.util.regex.Pattern.quote(String.valueOf(ch)));
            }
        }
        return java.util.regex.Pattern.compile(b.toString());
    }

    /** Every row id of the full plan (for --rows validation and --help). */
    static List<String> allRowIds() {
        return build(false, allKinds()).cells.stream().map(c -> c.workload().id()).toList();
    }

    private static Cell cell(Workload w, Set<Kind> only) {
        List<SystemSpec> s = new ArrayList<>();
        if (only.contains(Kind.HOST) && !w.poll() && !w.media().qcow2) {
            s.add(SystemSpec.HOST);
        }
        if (only.contains(Kind.QSD)) {
            s.add(SystemSpec.QSD);
        }
        if (only.contains(Kind.VHOSTBLK)) {
            if (w.media().qcow2) {
                // qcow2 is served on I/O threads whatever --engine says: one variant, named for what runs
                s.add(SystemSpec.vhostblk("threads", 1, 0));
            } else {
                int pollUs = w.poll() ? POLL_US : 0;
                for (String engine : List.of("io_uring", "threads")) {
                    s.add(SystemSpec.vhostblk(engine, 1, pollUs));
                    if (w.queues() >= 2) {
                        s.add(SystemSpec.vhostblk(engine, 2, pollUs));
                    }
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

    /** Backend starts over {@code reps} repetitions: once per backend, once per run on media created anew for every run. */
    int backendStarts(int reps) {
        int n = 0;
        for (BackendKey k : backends()) {
            n += k.media().fresh ? (int) cells.stream().filter(c -> c.workload().media() == k.media() && c.systems().contains(k.spec()))
                    .count() * reps : 1;
        }
        return n;
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
