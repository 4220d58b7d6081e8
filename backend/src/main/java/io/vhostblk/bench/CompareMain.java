package io.vhostblk.bench;

import io.vhostblk.bench.ComparePlan.BackendKey;
import io.vhostblk.bench.ComparePlan.Cell;
import io.vhostblk.bench.ComparePlan.Kind;
import io.vhostblk.bench.ComparePlan.Media;
import io.vhostblk.bench.ComparePlan.SystemSpec;
import io.vhostblk.bench.ComparePlan.Workload;
import io.vhostblk.bench.CompareStats.Results;
import io.vhostblk.bench.CompareStats.RunResult;
import io.vhostblk.bench.CompareStats.Startup;
import io.vhostblk.bench.CompareStats.Summary;
import io.vhostblk.bench.CompareStats.Target;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.DefaultParser;
import org.apache.commons.cli.HelpFormatter;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;
import org.apache.commons.cli.ParseException;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * {@code bench/compare}: on one machine, in one run, measures host fio, qemu-storage-daemon and
 * vhostblk (both engines) on the same files — a disk file with O_DIRECT, a RAM-disk file, and
 * qcow2 images on the RAM disk (every cluster allocated; new and empty for every run) — with the
 * same frontend driver ({@code vhostblk-bench} as a subprocess), alternating systems run by run,
 * several repetitions, medians; then prints a table, checks the targets of issues 3 and 4 and
 * writes compare.json / compare.md / compare.svg.
 *
 * <p>Backend CPU is utime+stime of the backend process from /proc/PID/stat over the
 * measured window (vhostblk-bench --marks tells when it opens and closes). Host fio's CPU is taken
 * the same way (all fio processes, io_uring io-wq workers included — fio's own usr/sys uses
 * RUSAGE_THREAD, which misses them; it is kept in the JSON as fio_reported_cpu_us_per_io).
 *
 * <p>Exit status: 0 every run succeeded (targets are reported, not enforced), 1 a run failed,
 * 2 bad options or missing tools, 130 interrupted.
 */
public final class CompareMain {
    static final String NAME = "vhostblk-compare";
    /** Wait after the socket listens before reading VmRSS, so the process has settled. */
    static final long IDLE_SETTLE_MS = 300;
    static final long LISTEN_TIMEOUT_MS = 30_000;

    /** Parsed options. */
    record Config(boolean quick, double runtimeS, double rampS, int reps, long size, Path dir, Path out, Set<Kind> only,
                  String qsd, String fio, Path root, boolean dryRun, List<String> rows, String qemuImg) {
    }

    static final class UsageException extends Exception {
        UsageException(String m) {
            super(m);
        }
    }

    private final Config cfg;
    private final PrintStream out;
    private final PrintStream err;
    private final CompareProcs procs = new CompareProcs();
    private final Map<BackendKey, Backend> backends = new LinkedHashMap<>();
    /** Raw media: the test file. */
    private final Map<Media, Path> files = new LinkedHashMap<>();
    /** Per medium: the scratch directory holding its files (deleted after the medium's last row). */
    private final Map<Media, Path> dirs = new LinkedHashMap<>();
    /** qcow2 with allocated clusters: one copy of the image per backend (two writers must not share a qcow2). */
    private final Map<BackendKey, Path> images = new LinkedHashMap<>();
    private ComparePlan plan;
    /** Requests the last vhostblk-bench run submitted, ramp included. */
    private long lastSubmitted;
    private final List<Startup> startups = new ArrayList<>();
    private final List<String> failures = new ArrayList<>();
    private final Map<String, String> tools = new LinkedHashMap<>();
    private Path work;
    private String qsdAio = "io_uring";
    private int runNo;
    private int runsTotal;

    private CompareMain(Config cfg, PrintStream out, PrintStream err) {
        this.cfg = cfg;
        this.out = out;
        this.err = err;
    }

    public static void main(String[] args) {
        System.exit(run(args, System.out, System.err));
    }

    static Options options() {
        Options o = new Options();
        o.addOption(Option.builder().longOpt("quick").desc("1 repetition of 2 s, RAM disk only, iodepth 128, 1 queue (< 1 minute)").build());
        o.addOption(Option.builder().longOpt("runtime").hasArg().argName("S").desc("measured seconds per run (default 5, quick 2)").build());
        o.addOption(Option.builder().longOpt("ramp").hasArg().argName("S").desc("warm-up seconds before each measured run (default 1, quick 0.5)").build());
        o.addOption(Option.builder().longOpt("reps").hasArg().argName("N").desc("repetitions of every run; medians are reported (default 3, quick 1)").build());
        o.addOption(Option.builder().longOpt("size").hasArg().argName("BYTES").desc("size of each test file, k/m/g suffixes (default 1g)").build());
        o.addOption(Option.builder().longOpt("dir").hasArg().argName("DIR")
                .desc("directory on the local disk for the disk file (default /var/tmp); the RAM-disk file goes to /dev/shm").build());
        o.addOption(Option.builder().longOpt("out").hasArg().argName("DIR").desc("write compare.json, compare.md and compare.svg here").build());
        o.addOption(Option.builder().longOpt("only").hasArg().argName("LIST").desc("comma-separated subset of host,qsd,vhostblk (default all)").build());
        o.addOption(Option.builder().longOpt("rows").hasArg().argName("GLOBS")
                .desc("comma-separated globs over row ids, e.g. 'ram-*-qd128-q1,qcow2*' (the qcow2 rows and their raw references); "
                        + "see --dry-run for the ids (default all rows of the mode)").build());
        o.addOption(Option.builder().longOpt("qsd").hasArg().argName("PATH").desc("qemu-storage-daemon binary (default: on PATH)").build());
        o.addOption(Option.builder().longOpt("fio").hasArg().argName("PATH").desc("fio binary (default: on PATH)").build());
        o.addOption(Option.builder().longOpt("qemu-img").hasArg().argName("PATH").desc("qemu-img binary, makes the qcow2 images (default: on PATH)").build());
        o.addOption(Option.builder().longOpt("dry-run").desc("print the plan and the time estimate, run nothing").build());
        o.addOption(Option.builder("h").longOpt("help").desc("show this help").build());
        return o;
    }

    public static int run(String[] args, PrintStream out, PrintStream err) {
        Config cfg;
        try {
            CommandLine cl = new DefaultParser().parse(options(), args);
            if (cl.hasOption("help")) {
                PrintWriter w = new PrintWriter(out);
                new HelpFormatter().printHelp(w, 100, "bench/compare [options]",
                        "Compare host fio, qemu-storage-daemon and vhostblk on a disk file (O_DIRECT) and a RAM-disk file.",
                        options(), 2, 2, "Exit: 0 all runs ok (targets are reported, not enforced), 1 a run failed, 2 bad options.");
                w.flush();
                return 0;
            }
            cfg = parse(cl);
        } catch (ParseException | UsageException e) {
            err.println(NAME + ": " + e.getMessage() + " (see --help)");
            return 2;
        }
        CompareMain m = new CompareMain(cfg, out, err);
        return m.runAll();
    }

    static Config parse(CommandLine cl) throws UsageException {
        if (!cl.getArgList().isEmpty()) {
            throw new UsageException("unexpected argument '" + cl.getArgList().getFirst() + "'");
        }
        boolean quick = cl.hasOption("quick");
        double runtime = seconds(cl, "runtime", quick ? 2 : 5, 0.1);
        double ramp = seconds(cl, "ramp", quick ? 0.5 : 1, 0);
        int reps;
        try {
            reps = Integer.parseInt(cl.getOptionValue("reps", quick ? "1" : "3").trim());
        } catch (NumberFormatException e) {
            throw new UsageException("--reps wants an integer, not '" + cl.getOptionValue("reps") + "'");
        }
        if (reps < 1 || reps > 100) {
            throw new UsageException("--reps must be 1..100, not " + reps);
        }
        long size = BenchMain.parseSize(cl.getOptionValue("size", "1g"));
        if (size < (1 << 20) || size % (1 << 20) != 0) {
            throw new UsageException("--size must be a whole number of MiB, at least 1m, not '" + cl.getOptionValue("size") + "'");
        }
        Set<Kind> only = EnumSet.noneOf(Kind.class);
        for (String s : cl.getOptionValue("only", "host,qsd,vhostblk").split(",")) {
            if (s.isBlank()) {
                continue;
            }
            Kind k = Kind.parse(s);
            if (k == null) {
                throw new UsageException("--only takes host, qsd and vhostblk, not '" + s.trim() + "'");
            }
            only.add(k);
        }
        if (only.isEmpty()) {
            throw new UsageException("--only selects no system");
        }
        List<String> rows = new ArrayList<>();
        if (cl.hasOption("rows")) {
            List<String> ids = ComparePlan.allRowIds();
            for (String g : cl.getOptionValue("rows").split(",")) {
                if (g.isBlank()) {
                    continue;
                }
                if (ids.stream().noneMatch(id -> ComparePlan.glob(g).matcher(id).matches())) {
                    throw new UsageException("--rows '" + g.trim() + "' matches no row (rows: " + String.join(" ", ids) + ")");
                }
                rows.add(g.trim());
            }
            if (rows.isEmpty()) {
                throw new UsageException("--rows selects no row");
            }
        }
        Path dir = Path.of(cl.getOptionValue("dir", "/var/tmp")).toAbsolutePath();
        Path outDir = cl.hasOption("out") ? Path.of(cl.getOptionValue("out")).toAbsolutePath() : null;
        return new Config(quick, runtime, ramp, reps, size, dir, outDir, only, cl.getOptionValue("qsd", "qemu-storage-daemon"),
                cl.getOptionValue("fio", "fio"), findRoot(), cl.hasOption("dry-run"), List.copyOf(rows),
                cl.getOptionValue("qemu-img", "qemu-img"));
    }

    private static double seconds(CommandLine cl, String name, double dflt, double min) throws UsageException {
        String v = cl.getOptionValue(name);
        if (v == null) {
            return dflt;
        }
        try {
            double d = Double.parseDouble(v.trim());
            if (d >= min && d <= 3600) {
                return d;
            }
        } catch (NumberFormatException e) {
            // below
        }
        throw new UsageException("--" + name + " wants seconds in " + min + "..3600, not '" + v + "'");
    }

    /** The checkout: -Dvhostblk.root (set by bench/compare), else the nearest parent of the working directory with bin/vhostblk-backend. */
    static Path findRoot() throws UsageException {
        String p = System.getProperty("vhostblk.root");
        if (p != null) {
            return Path.of(p).toAbsolutePath();
        }
        for (Path d = Path.of("").toAbsolutePath(); d != null; d = d.getParent()) {
            if (Files.isExecutable(d.resolve("bin/vhostblk-backend"))) {
                return d;
            }
        }
        throw new UsageException("cannot find bin/vhostblk-backend above " + Path.of("").toAbsolutePath() + "; set -Dvhostblk.root");
    }

    // ------------------------------------------------------------------ the run

    private int runAll() {
        ComparePlan plan = ComparePlan.build(cfg.quick(), cfg.only(), cfg.rows());
        this.plan = plan;
        if (plan.cells.isEmpty()) {
            err.println(NAME + ": --rows, --only and --quick leave no row to run (see --dry-run)");
            return 2;
        }
        if (cfg.dryRun()) {
            for (Cell c : plan.cells) {
                out.printf(Locale.ROOT, "%-30s %-30s %s%n", c.workload().label(), c.workload().id(),
                        String.join(" ", c.systems().stream().map(SystemSpec::label).toList()));
            }
            out.printf(Locale.ROOT, "%d runs of %s s (+%s s ramp) in %d repetition(s), %d backend start(s); estimated %s%n",
                    plan.runs(cfg.reps()), num(cfg.runtimeS()), num(cfg.rampS()), cfg.reps(), plan.backendStarts(cfg.reps()),
                    duration(estimateSeconds(plan)));
            return 0;
        }
        if (!checkTools(plan)) {
            return 2;
        }
        Thread hook = new Thread(() -> {
            err.println(NAME + ": interrupted; stopping child processes and deleting scratch files");
            procs.cleanup();
        }, "compare-cleanup");
        Runtime.getRuntime().addShutdownHook(hook);
        long t0 = System.nanoTime();
        String loadBefore = CompareProcs.loadavg();
        Instant started = Instant.now();
        Results results = new Results();
        try {
            work = Files.createTempDirectory("vhostblk-compare-");
            procs.scratch(work);
            runsTotal = plan.runs(cfg.reps());
            err.printf(Locale.ROOT, "%s: %d workloads, %d runs of %.1f s (+%.1f s ramp), %d repetition(s), %d backend start(s); "
                            + "estimated %s%n", NAME, plan.cells.size(), runsTotal, cfg.runtimeS(), cfg.rampS(), cfg.reps(),
                    plan.backendStarts(cfg.reps()), duration(estimateSeconds(plan)));
            for (int c = 0; c < plan.cells.size() && !procs.closing(); c++) {
                Cell cell = plan.cells.get(c);
                Map<SystemSpec, List<RunResult>> runs = new LinkedHashMap<>();
                for (SystemSpec s : cell.systems()) {
                    runs.put(s, new ArrayList<>());
                }
                for (int rep = 0; rep < cfg.reps() && !procs.closing(); rep++) {
                    for (SystemSpec s : ComparePlan.order(cell, rep)) {
                        if (procs.closing()) {
                            break;
                        }
                        RunResult r = runOne(cell.workload(), s, rep);
                        runs.get(s).add(r);
                    }
                }
                for (Map.Entry<SystemSpec, List<RunResult>> e : runs.entrySet()) {
                    results.put(Summary.of(cell.workload(), e.getKey(), e.getValue()));
                }
                for (BackendKey k : new ArrayList<>(backends.keySet())) {
                    if (plan.lastUse(k) <= c) {
                        stopBackend(k);
                    }
                }
                Media m = cell.workload().media();
                if (plan.lastUse(m) <= c && dirs.containsKey(m)) {
                    procs.delete(dirs.remove(m));
                    files.remove(m);
                    images.keySet().removeIf(k -> k.media() == m);
                }
            }
        } catch (IOException | RuntimeException e) {
            failures.add("harness: " + e);
            err.println(NAME + ": " + e);
        } finally {
            for (BackendKey k : new ArrayList<>(backends.keySet())) {
                stopBackend(k);
            }
            procs.cleanup();
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException e) {
                // shutting down: the hook runs anyway
            }
        }
        double elapsed = (System.nanoTime() - t0) / 1e9;
        List<Target> targets = CompareStats.targets(results, startups);
        CompareReport report = new CompareReport(results, targets, startups, meta(started, elapsed, loadBefore), failures);
        out.print(report.table());
        out.flush();
        if (cfg.out() != null) {
            try {
                Files.createDirectories(cfg.out());
                Files.writeString(cfg.out().resolve("compare.json"), report.json());
                Files.writeString(cfg.out().resolve("compare.md"), report.markdown());
                Files.writeString(cfg.out().resolve("compare.svg"), report.svg());
                err.println(NAME + ": wrote " + cfg.out().resolve("compare.{json,md,svg}"));
            } catch (IOException e) {
                err.println(NAME + ": cannot write results to " + cfg.out() + ": " + e.getMessage());
                failures.add("writing results: " + e.getMessage());
            }
        }
        err.printf(Locale.ROOT, "%s: done in %s%s%n", NAME, duration(elapsed),
                failures.isEmpty() ? "" : "; " + failures.size() + " failure(s)");
        return failures.isEmpty() ? 0 : 1;
    }

    private boolean checkTools(ComparePlan plan) {
        List<String> missing = new ArrayList<>();
        if (plan.media().stream().anyMatch(m -> m.qcow2)) {
            version("qemu-img", List.of(cfg.qemuImg(), "--version"), missing);
        }
        if (cfg.only().contains(Kind.HOST)) {
            version("fio", List.of(cfg.fio(), "--version"), missing);
        }
        if (cfg.only().contains(Kind.QSD)) {
            version("qemu-storage-daemon", List.of(cfg.qsd(), "--version"), missing);
        }
        if ((cfg.only().contains(Kind.QSD) || cfg.only().contains(Kind.VHOSTBLK))
                && !Files.isExecutable(cfg.root().resolve("bin/vhostblk-bench"))) {
            missing.add(cfg.root().resolve("bin/vhostblk-bench").toString());
        }
        if (cfg.only().contains(Kind.VHOSTBLK) && !Files.isExecutable(cfg.root().resolve("bin/vhostblk-backend"))) {
            missing.add(cfg.root().resolve("bin/vhostblk-backend").toString());
        }
        if (!missing.isEmpty()) {
            err.println(NAME + ": missing " + String.join(", ", missing) + " (or use --only, or --rows to leave the qcow2 rows out)");
            return false;
        }
        if (!Files.isDirectory(cfg.dir())) {
            err.println(NAME + ": --dir " + cfg.dir() + " is not a directory");
            return false;
        }
        return true;
    }

    private void version(String name, List<String> cmd, List<String> missing) {
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            String text = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (p.waitFor() != 0) {
                missing.add(name + " (" + String.join(" ", cmd) + " failed)");
                return;
            }
            tools.put(name, text.lines().findFirst().orElse("").trim());
        } catch (IOException e) {
            missing.add(name + " (" + cmd.getFirst() + ")");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            missing.add(name);
        }
    }

    /**
     * Seconds the plan should take: runs, per-run process start, backend starts, writing the files
     * (a qcow2 image with allocated clusters: the data file, then one conversion per backend), and
     * per run on a new qcow2 image: creating and checking it.
     */
    double estimateSeconds(ComparePlan plan) {
        double perRun = cfg.runtimeS() + cfg.rampS();
        double total = 0;
        for (Cell c : plan.cells) {
            for (SystemSpec s : c.systems()) {
                // start of the bench JVM (or fio) and teardown, measured on a 2-core machine
                total += cfg.reps() * (perRun + (s.kind() == Kind.HOST ? 0.2 : 0.6) + (c.workload().media().fresh ? 0.3 : 0));
            }
        }
        total += plan.backendStarts(cfg.reps()) * (1.0 + IDLE_SETTLE_MS / 1000.0);
        for (Media m : plan.media()) {
            long copies = m == Media.QCOW2 ? plan.backends().stream().filter(k -> k.media() == m).count() : 0;
            total += m.fresh ? 0 : (1 + copies) * cfg.size() / 400e6;
        }
        return total;
    }

    static String duration(double s) {
        long t = Math.round(s);
        return t >= 60 ? String.format(Locale.ROOT, "%dm%02ds", t / 60, t % 60) : t + "s";
    }

    // ------------------------------------------------------------------ files

    /** The scratch directory of a medium, created on first use: under --dir for the disk, in /dev/shm otherwise. */
    private Path dir(Media m) throws IOException {
        Path d = dirs.get(m);
        if (d != null) {
            return d;
        }
        Path base = m == Media.DISK ? cfg.dir() : Path.of("/dev/shm");
        d = base.resolve("vhostblk-compare-" + ProcessHandle.current().pid() + (m.qcow2 ? "-" + m.id : ""));
        Files.createDirectories(d);
        procs.scratch(d);
        if (m == Media.DISK) {
            String type = Files.getFileStore(d).type();
            if ("tmpfs".equals(type) || "ramfs".equals(type)) {
                err.println(NAME + ": warning: --dir " + cfg.dir() + " is " + type + ", not a local disk");
            }
        }
        dirs.put(m, d);
        return d;
    }

    /** The test file of a raw medium, created and filled with data on first use. */
    private Path file(Media m) throws IOException {
        Path f = files.get(m);
        if (f != null) {
            return f;
        }
        f = dir(m).resolve(m.id + ".raw");
        long t0 = System.nanoTime();
        fill(f, cfg.size(), m == Media.DISK);
        err.printf(Locale.ROOT, "%s: wrote %d MiB to %s in %.1f s%n", NAME, cfg.size() >> 20, f, (System.nanoTime() - t0) / 1e9);
        files.put(m, f);
        return f;
    }

    /**
     * The image system {@code s} runs on: the raw file of the medium; on qcow2 with allocated
     * clusters its own copy of the image (made on first use for every backend of the plan); on a
     * new qcow2 image the path its image is created at before every run.
     */
    private Path image(Media m, SystemSpec s) throws IOException {
        if (!m.qcow2) {
            return file(m);
        }
        if (m.fresh) {
            return dir(m).resolve(s.label() + ".qcow2");
        }
        BackendKey key = new BackendKey(m, s);
        if (!images.containsKey(key)) {
            makeAllocatedImages(m);
        }
        Path p = images.get(key);
        if (p == null) {
            throw new IOException("no qcow2 image for " + s.label());
        }
        return p;
    }

    /**
     * qcow2 images with every cluster allocated and holding data, one per backend of the plan on
     * medium {@code m}: a raw file of --size bytes of data, converted by qemu-img (64 KiB clusters,
     * no zero detection can apply: no block of the data is zero), then checked with qemu-img map:
     * every byte must be data, none a hole or a zero cluster. The raw file is deleted again.
     */
    private void makeAllocatedImages(Media m) throws IOException {
        Path d = dir(m);
        Path raw = d.resolve("data.raw");
        long t0 = System.nanoTime();
        fill(raw, cfg.size(), false);
        for (BackendKey k : plan.backends()) {
            if (k.media() != m) {
                continue;
            }
            Path img = d.resolve(k.spec().label() + ".qcow2");
            qemuImg(List.of("convert", "-q", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=" + ComparePlan.QCOW2_CLUSTER,
                    raw.toString(), img.toString()));
            checkAllocated(img, cfg.size());
            images.put(k, img);
        }
        Files.delete(raw);
        err.printf(Locale.ROOT, "%s: made %d qcow2 image(s) of %d MiB with every cluster allocated in %s in %.1f s%n", NAME,
                images.keySet().stream().filter(k -> k.media() == m).count(), cfg.size() >> 20, d, (System.nanoTime() - t0) / 1e9);
    }

    /** Fails unless qemu-img map shows {@code [0, size)} of {@code img} as data: no hole, no zero cluster. */
    private void checkAllocated(Path img, long size) throws IOException {
        Object map = MiniJson.parse(qemuImg(List.of("map", "--output=json", "-f", "qcow2", img.toString())).strip());
        long covered = 0;
        if (map instanceof List<?> extents) {
            for (Object e : extents) {
                if (!Boolean.TRUE.equals(MiniJson.at(e, "data")) || !Boolean.FALSE.equals(MiniJson.at(e, "zero"))) {
                    throw new IOException(img + ": not every cluster is allocated with data: " + e);
                }
                covered += (long) MiniJson.num(e, "length");
            }
        }
        if (covered != size) {
            throw new IOException(img + ": qemu-img map covers " + covered + " bytes with data, not " + size);
        }
    }

    /** An empty qcow2 image of {@link ComparePlan#QCOW2_NEW_SIZE} bytes at {@code img}, replacing the previous one. */
    private void newImage(Path img) throws IOException {
        Files.deleteIfExists(img);
        qemuImg(List.of("create", "-q", "-f", "qcow2", "-o", "cluster_size=" + ComparePlan.QCOW2_CLUSTER, img.toString(),
                String.valueOf(ComparePlan.QCOW2_NEW_SIZE)));
    }

    /**
     * After a run on a new image (backend stopped): qemu-img check; returns the share of the
     * run's writes that allocated a cluster, i.e. allocated clusters / writes submitted. A check
     * that finds corruption or leaks is a failure of the run's backend.
     */
    private double allocShare(Path img, long submitted, String what) {
        Process p = null;
        try {
            p = procs.start(new ProcessBuilder(cfg.qemuImg(), "check", "--output=json", "-f", "qcow2", img.toString()).redirectErrorStream(true));
            String text = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(60, TimeUnit.SECONDS)) {
                failures.add(what + ": qemu-img check did not finish");
                return Double.NaN;
            }
            int st = p.exitValue();
            if (st != 0) {
                failures.add(what + ": qemu-img check of the image after the run: exit " + st + " (" + firstLines(text.strip()) + ")");
            }
            int brace = text.indexOf('{');
            if (brace < 0) {
                return Double.NaN;
            }
            double allocated = MiniJson.num(MiniJson.parse(text.substring(brace).strip()), "allocated-clusters");
            return submitted > 0 ? allocated / submitted : Double.NaN;
        } catch (IOException | RuntimeException e) {
            failures.add(what + ": qemu-img check: " + e.getMessage());
            return Double.NaN;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return Double.NaN;
        } finally {
            if (p != null) {
                procs.stop(p, 2_000);
            }
        }
    }

    /** Runs qemu-img, returns its stdout; fails with its output on a non-zero exit. */
    private String qemuImg(List<String> args) throws IOException {
        List<String> cmd = new ArrayList<>();
        cmd.add(cfg.qemuImg());
        cmd.addAll(args);
        Path errFile = work.resolve("qemu-img.err");
        Process p = procs.start(new ProcessBuilder(cmd).redirectError(errFile.toFile()));
        try {
            String text = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(600, TimeUnit.SECONDS)) {
                throw new IOException(String.join(" ", cmd) + ": did not finish");
            }
            if (p.exitValue() != 0) {
                throw new IOException(String.join(" ", cmd) + ": exit " + p.exitValue() + ": " + tail(errFile));
            }
            return text;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted");
        } finally {
            procs.stop(p, 2_000);
        }
    }

    /** Writes {@code size} bytes of non-zero data (every block allocated: no holes that read for free). */
    static void fill(Path f, long size, boolean sync) throws IOException {
        ByteBuffer buf = ByteBuffer.allocateDirect(1 << 20);
        SplittableRandom rnd = new SplittableRandom(0x5EED);
        while (buf.hasRemaining()) {
            buf.putLong(rnd.nextLong() | 1);
        }
        try (FileChannel ch = FileChannel.open(f, StandardOpenOption.CREATE, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
            for (long off = 0; off < size; off += buf.capacity()) {
                buf.clear();
                buf.putLong(0, off);
                buf.limit((int) Math.min(buf.capacity(), size - off));
                while (buf.hasRemaining()) {
                    ch.write(buf, off + buf.position());
                }
            }
            if (sync) {
                ch.force(true);
            }
        }
    }

    // ------------------------------------------------------------------ backends

    /** A running QSD or vhostblk process serving one file on one socket. */
    record Backend(BackendKey key, Process process, Path socket, Path log) {
        long pid() {
            return process.pid();
        }
    }

    private Backend backend(BackendKey key, Path file) throws IOException {
        Backend b = backends.get(key);
        if (b != null && b.process().isAlive()) {
            return b;
        }
        if (b != null) {
            failures.add(key.spec().label() + " on " + key.media().id + ": backend died: " + tail(b.log()));
            backends.remove(key);
        }
        b = spawn(key, file);
        backends.put(key, b);
        return b;
    }

    private Backend spawn(BackendKey key, Path file) throws IOException {
        String name = key.media().id + "-" + key.spec().label();
        Path sock = work.resolve(name + ".sock");
        Path log = work.resolve(name + ".log");
        Files.deleteIfExists(sock);
        List<String> cmd = new ArrayList<>();
        SystemSpec s = key.spec();
        boolean qcow2 = key.media().qcow2;
        if (s.kind() == Kind.QSD) {
            cmd.addAll(List.of(cfg.qsd(), "--blockdev", "driver=file,node-name=f0,filename=" + file + ",cache.direct=on,aio=" + qsdAio));
            if (qcow2) {
                cmd.addAll(List.of("--blockdev", "driver=qcow2,node-name=q0,file=f0"));
            }
            cmd.addAll(List.of("--export", "type=vhost-user-blk,id=e0,node-name=" + (qcow2 ? "q0" : "f0") + ",addr.type=unix,addr.path="
                    + sock + ",writable=on,num-queues=" + ComparePlan.BACKEND_QUEUES));
        } else {
            cmd.addAll(List.of(cfg.root().resolve("bin/vhostblk-backend").toString(), "--socket-path", sock.toString(), "--blk-file",
                    file.toString(), "--format", qcow2 ? "qcow2" : "raw", "--num-queues", String.valueOf(ComparePlan.BACKEND_QUEUES),
                    "--workers", String.valueOf(s.workers()), "--engine", s.engine(), "--cache", "none", "--poll-us",
                    String.valueOf(s.pollUs())));
        }
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile());
        childEnv(pb);
        long t0 = System.nanoTime();
        Process p = procs.start(pb);
        long deadline = t0 + TimeUnit.MILLISECONDS.toNanos(LISTEN_TIMEOUT_MS);
        while (!CompareProcs.listening(sock)) {
            if (!p.isAlive() || System.nanoTime() > deadline || procs.closing()) {
                procs.stop(p, 2_000);
                String why = p.isAlive() ? "did not listen within " + LISTEN_TIMEOUT_MS + " ms" : "exited with " + exitValue(p);
                if (s.kind() == Kind.QSD && "io_uring".equals(qsdAio) && !procs.closing()) {
                    // QEMU built without liburing: fall back to Linux AIO, as the issue allows
                    err.println(NAME + ": qemu-storage-daemon with aio=io_uring " + why + " (" + tail(log) + "); using aio=native");
                    qsdAio = "native";
                    return spawn(key, file);
                }
                throw new IOException(name + ": " + why + ": " + tail(log));
            }
            sleepMs(1);
        }
        double startMs = (System.nanoTime() - t0) / 1e6;
        sleepMs(IDLE_SETTLE_MS);
        long rss = CompareProcs.rssKib(p.pid());
        startups.add(new Startup(s, key.media(), startMs, rss));
        err.printf(Locale.ROOT, "%s: started %s on %s: listening after %.0f ms, idle RSS %.1f MiB%n", NAME, s.label(), key.media().id,
                startMs, rss / 1024.0);
        return new Backend(key, p, sock, log);
    }

    /** Copies the log of a backend whose run failed to --out/logs/; returns a note for the error line. */
    private String saveLog(Backend b, Workload w, int rep) {
        if (cfg.out() == null) {
            return " (backend log: " + tail(b.log()) + "; --out keeps whole logs)";
        }
        if (b.key().spec().kind() == Kind.VHOSTBLK && b.process().isAlive()) {
            // a JVM prints its thread dump on SIGQUIT, into the log: where is it stuck?
            try {
                new ProcessBuilder("kill", "-QUIT", String.valueOf(b.pid())).start().waitFor(2, TimeUnit.SECONDS);
                sleepMs(500);
            } catch (IOException e) {
                // no dump then
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        try {
            Path d = Files.createDirectories(cfg.out().resolve("logs"));
            Path to = d.resolve(w.id() + "-rep" + (rep + 1) + "-" + b.key().spec().label() + ".log");
            Files.copy(b.log(), to, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            return " (backend log: " + to + ")";
        } catch (IOException e) {
            return " (backend log lost: " + e.getMessage() + ")";
        }
    }

    private void stopBackend(BackendKey k) {
        Backend b = backends.remove(k);
        if (b != null) {
            procs.stop(b.process(), 10_000);
        }
    }

    private void childEnv(ProcessBuilder pb) {
        // the children run exactly the classes this harness runs (target/classes in tests, the jar otherwise)
        pb.environment().put("VHOSTBLK_CLASSPATH", System.getProperty("java.class.path"));
        pb.environment().put("JAVA_HOME", System.getProperty("java.home"));
    }

    // ------------------------------------------------------------------ runs

    private RunResult runOne(Workload w, SystemSpec s, int rep) {
        runNo++;
        RunResult r;
        Media m = w.media();
        BackendKey key = new BackendKey(m, s);
        Path img = null;
        try {
            img = image(m, s);
            if (s.kind() == Kind.HOST) {
                r = runFio(w, img);
            } else {
                if (m.fresh) {
                    // a new, empty image for every run: the backend holds the old one open, so it starts again too
                    stopBackend(key);
                    newImage(img);
                }
                Backend b = backend(key, img);
                r = runFrontend(w, b);
                if (!b.process().isAlive()) {
                    r = RunResult.failed("backend died during the run: " + tail(b.log()));
                }
                if (!r.ok()) {
                    // keep its log, and start it afresh for the next run: a stuck backend would fail them all
                    r = RunResult.failed(r.error() + saveLog(b, w, rep));
                    stopBackend(key);
                }
                if (m.fresh) {
                    stopBackend(key);
                    if (r.ok()) {
                        r = r.withAllocShare(allocShare(img, lastSubmitted, w.label() + " rep " + (rep + 1) + " " + s.label()));
                    }
                    Files.deleteIfExists(img);
                }
            }
        } catch (IOException | RuntimeException e) {
            r = RunResult.failed(e.getMessage() == null ? e.toString() : e.getMessage());
            if (m.fresh) {
                stopBackend(key);
            }
        }
        if (r.ok()) {
            err.printf(Locale.ROOT, "[%d/%d] %-26s rep %d  %-26s %9.0f IOPS  p50 %7.1f us  p99 %8.1f us  cpu %6.2f us/IO%s%n", runNo,
                    runsTotal, w.label(), rep + 1, s.label(), r.iops(), r.p50Us(), r.p99Us(), r.cpuUsPerIo(),
                    Double.isFinite(r.allocShare()) ? String.format(Locale.ROOT, "  %.1f%% of %d writes allocated", 100 * r.allocShare(),
                            lastSubmitted) : "");
        } else if (!procs.closing()) {
            String msg = w.label() + " rep " + (rep + 1) + " " + s.label() + ": " + r.error();
            failures.add(msg);
            err.printf(Locale.ROOT, "[%d/%d] FAILED %s%n", runNo, runsTotal, msg);
        }
        return r;
    }

    /** vhostblk-bench against a backend; backend CPU sampled at the edges of the measured window. */
    private RunResult runFrontend(Workload w, Backend b) throws IOException {
        boolean fresh = w.media().fresh;
        List<String> cmd = new ArrayList<>(List.of(cfg.root().resolve("bin/vhostblk-bench").toString(), "--socket", b.socket().toString(),
                "--rw", w.rw(), "--bs", String.valueOf(ComparePlan.BS), "--iodepth", String.valueOf(w.iodepth()),
                "--queues", String.valueOf(w.queues()), "--runtime", num(cfg.runtimeS()), "--ramp", num(cfg.rampS()),
                "--size", String.valueOf(fresh ? ComparePlan.QCOW2_NEW_SIZE : cfg.size()), "--event-idx", "--indirect", "--json", "--marks"));
        if (w.poll()) {
            cmd.add("--poll");
        }
        if (fresh) {
            // the image grows by a cluster per allocating write: bound what one run writes
            cmd.addAll(List.of("--max-ios", String.valueOf(ComparePlan.QCOW2_NEW_MAX_IOS), "--ramp-ios",
                    String.valueOf(ComparePlan.QCOW2_NEW_RAMP_IOS)));
        }
        lastSubmitted = 0;
        Path outFile = work.resolve("bench.out");
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectOutput(outFile.toFile());
        childEnv(pb);
        Process p = procs.start(pb);
        long pid = b.pid();
        long[] ticks = {-1, -1};
        StringBuilder stderr = new StringBuilder();
        Thread errReader = Thread.ofPlatform().daemon().name("bench-stderr").start(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getErrorStream(), StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    if (line.equals(BenchMain.MARK_START)) {
                        ticks[0] = CompareProcs.cpuTicks(pid);
                    } else if (line.equals(BenchMain.MARK_END)) {
                        ticks[1] = CompareProcs.cpuTicks(pid);
                    } else {
                        synchronized (stderr) {
                            stderr.append(line).append('\n');
                        }
                    }
                }
            } catch (IOException e) {
                // the process is gone
            }
        });
        int status;
        try {
            if (!p.waitFor((long) ((cfg.runtimeS() + cfg.rampS()) * 1000) + 60_000, TimeUnit.MILLISECONDS)) {
                procs.stop(p, 2_000);
                return RunResult.failed("vhostblk-bench did not finish");
            }
            status = p.exitValue();
            errReader.join(5_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return RunResult.failed("interrupted");
        } finally {
            procs.stop(p, 2_000);
        }
        String stdout = Files.readString(outFile);
        String errText;
        synchronized (stderr) {
            errText = stderr.toString().strip();
        }
        String line = stdout.lines().filter(l -> l.startsWith("{")).reduce((a, c) -> c).orElse(null);
        if (status != 0 || line == null) {
            return RunResult.failed("vhostblk-bench exit " + status + ": " + firstLines(errText.isEmpty() ? stdout : errText));
        }
        Object j = MiniJson.parse(line);
        long ios = (long) MiniJson.num(j, "ios");
        lastSubmitted = (long) MiniJson.num(j, "submitted");
        long errors = (long) MiniJson.num(j, "errors");
        if (errors > 0) {
            return RunResult.failed(errors + " request(s) failed");
        }
        if (ticks[0] < 0 || ticks[1] < 0 || ios <= 0) {
            return RunResult.failed("no measured window (marks " + ticks[0] + ", " + ticks[1] + ", ios " + ios + ")");
        }
        double cpuUs = (ticks[1] - ticks[0]) * 1e6 / CompareProcs.CLK_TCK / ios;
        return new RunResult(MiniJson.num(j, "iops"), MiniJson.num(j, "lat_us", "p50"), MiniJson.num(j, "lat_us", "p99"),
                MiniJson.num(j, "lat_us", "p99_9"), cpuUs, ios, errors, MiniJson.num(j, "seconds"), MiniJson.num(j, "cpu_pct"),
                Double.NaN, Double.NaN, null);
    }

    /**
     * fio on the host, same file: io_uring, O_DIRECT, numjobs = queues, iodepth per job. CPU: the
     * utime+stime rate of all fio processes (sampled every 20 ms over the measured part) / IOPS.
     */
    private RunResult runFio(Workload w, Path file) throws IOException {
        Path json = work.resolve("fio.json");
        Path log = work.resolve("fio.log");
        List<String> cmd = List.of(cfg.fio(), "--name=host", "--filename=" + file, "--ioengine=io_uring", "--direct=1",
                "--rw=" + w.rw(), "--bs=" + ComparePlan.BS, "--iodepth=" + w.iodepth(), "--numjobs=" + w.queues(), "--time_based",
                "--runtime=" + Math.round(cfg.runtimeS() * 1000) + "ms", "--ramp_time=" + Math.round(cfg.rampS() * 1000) + "ms",
                "--size=" + cfg.size(), "--norandommap", "--randrepeat=0", "--allow_file_create=0", "--group_reporting",
                "--lat_percentiles=1", "--output-format=json", "--output=" + json);
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile());
        Files.deleteIfExists(json);
        Process p = procs.start(pb);
        long deadline = System.nanoTime() + (long) ((cfg.runtimeS() + cfg.rampS() + 60) * 1e9);
        long firstJob = -1;
        long winStart = -1;
        long ticksStart = 0;
        Set<Long> winPids = null;
        long winEnd = -1;
        long ticksEnd = 0;
        try {
            while (p.isAlive()) {
                if (System.nanoTime() > deadline) {
                    procs.stop(p, 2_000);
                    return RunResult.failed("fio did not finish");
                }
                long now = System.nanoTime();
                Set<Long> pids = new HashSet<>();
                pids.add(p.pid());
                p.descendants().forEach(h -> pids.add(h.pid()));
                if (pids.size() > 1) {
                    if (firstJob < 0) {
                        firstJob = now;
                    }
                    long t = 0;
                    boolean all = true;
                    for (long pid : pids) {
                        long x = CompareProcs.cpuTicks(pid);
                        all &= x >= 0;
                        t += Math.max(0, x);
                    }
                    if (all && winPids == null && now - firstJob >= cfg.rampS() * 1e9) {
                        winPids = pids;
                        winStart = now;
                        ticksStart = t;
                    } else if (all && winPids != null && pids.equals(winPids)) {
                        winEnd = now;
                        ticksEnd = t;
                    }
                }
                p.waitFor(20, TimeUnit.MILLISECONDS);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return RunResult.failed("interrupted");
        } finally {
            procs.stop(p, 2_000);
        }
        if (p.exitValue() != 0 || !Files.exists(json)) {
            return RunResult.failed("fio exit " + p.exitValue() + ": " + tail(log));
        }
        String text = Files.readString(json);
        Object j = MiniJson.parse(text.substring(Math.max(0, text.indexOf('{'))));
        Object job = MiniJson.at(j, "jobs") instanceof List<?> l && !l.isEmpty() ? l.getFirst() : null;
        if (job == null) {
            return RunResult.failed("fio wrote no job results");
        }
        if (MiniJson.num(job, "error") != 0) {
            return RunResult.failed("fio job error " + MiniJson.num(job, "error"));
        }
        String dir = w.rw().contains("read") ? "read" : "write";
        double iops = MiniJson.num(job, dir, "iops");
        long ios = (long) MiniJson.num(job, dir, "total_ios");
        double pct50 = MiniJson.num(job, dir, "lat_ns", "percentile", "50.000000") / 1000;
        double pct99 = MiniJson.num(job, dir, "lat_ns", "percentile", "99.000000") / 1000;
        double pct999 = MiniJson.num(job, dir, "lat_ns", "percentile", "99.900000") / 1000;
        double runtimeS = MiniJson.num(job, dir, "runtime") / 1000;
        double cpuUs = Double.NaN;
        if (winEnd - winStart >= 200_000_000L && iops > 0) {
            double cores = (ticksEnd - ticksStart) / (double) CompareProcs.CLK_TCK / ((winEnd - winStart) / 1e9);
            cpuUs = cores * 1e6 / iops;
        }
        double reported = (MiniJson.num(job, "usr_cpu") + MiniJson.num(job, "sys_cpu")) / 100 * MiniJson.num(job, "job_runtime") / 1000
                * 1e6 / ios;
        if (!(iops > 0) || !Double.isFinite(cpuUs)) {
            return RunResult.failed("fio results incomplete (iops " + iops + ", cpu window " + (winEnd - winStart) / 1e6 + " ms)");
        }
        return new RunResult(iops, pct50, pct99, pct999, cpuUs, ios, 0, runtimeS, Double.NaN, reported, Double.NaN, null);
    }

    // ------------------------------------------------------------------ bits

    private Map<String, String> meta(Instant started, double elapsed, String loadBefore) {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("started", started.toString());
        m.put("elapsed_s", String.format(Locale.ROOT, "%.1f", elapsed));
        m.put("mode", cfg.quick() ? "quick" : "full");
        m.put("runtime_s", num(cfg.runtimeS()));
        m.put("ramp_s", num(cfg.rampS()));
        m.put("reps", String.valueOf(cfg.reps()));
        m.put("size_bytes", String.valueOf(cfg.size()));
        m.put("disk_dir", cfg.dir().toString());
        m.put("only", String.join(",", cfg.only().stream().map(k -> k.id).toList()));
        m.put("rows", cfg.rows().isEmpty() ? "all" : String.join(",", cfg.rows()));
        m.put("kernel", read("/proc/sys/kernel/osrelease"));
        m.put("cpus", String.valueOf(Runtime.getRuntime().availableProcessors()));
        m.put("loadavg_before", loadBefore);
        m.put("loadavg_after", CompareProcs.loadavg());
        m.put("java", System.getProperty("java.vm.name") + " " + System.getProperty("java.version"));
        tools.forEach(m::put);
        m.put("qsd_aio", qsdAio);
        m.put("clk_tck", String.valueOf(CompareProcs.CLK_TCK));
        m.put("iodepth", "per queue (frontend) and per job (fio numjobs = queues)");
        m.put("frontend", "vhostblk-bench --event-idx --indirect (like a Linux guest); --poll on poll rows");
        m.put("cpu", "backend: /proc/PID/stat utime+stime over the measured window / I/Os; host: same over all fio processes");
        m.put("qcow2", "cluster " + ComparePlan.QCOW2_CLUSTER + " B; qcow2 rows: qemu-img convert of a raw file of data (every cluster "
                + "allocated, checked with qemu-img map), one copy per backend; QSD driver=qcow2 over driver=file; vhostblk --format qcow2 "
                + "(I/O threads whatever --engine)");
        m.put("qcow2_new", "qemu-img create of " + ComparePlan.QCOW2_NEW_SIZE + " bytes before every run, backend started for it; "
                + "vhostblk-bench --size " + ComparePlan.QCOW2_NEW_SIZE + " --max-ios " + ComparePlan.QCOW2_NEW_MAX_IOS + " --ramp-ios "
                + ComparePlan.QCOW2_NEW_RAMP_IOS + "; alloc_share = allocated clusters (qemu-img check) / writes submitted");
        return m;
    }

    private static String read(String path) {
        try {
            return Files.readString(Path.of(path)).trim();
        } catch (IOException e) {
            return "?";
        }
    }

    private static String num(double d) {
        return d == Math.rint(d) ? String.valueOf((long) d) : String.valueOf(d);
    }

    private static String tail(Path log) {
        try {
            List<String> l = Files.readAllLines(log);
            return String.join(" | ", l.subList(Math.max(0, l.size() - 3), l.size()));
        } catch (IOException e) {
            return "(no log)";
        }
    }

    private static String firstLines(String s) {
        return String.join(" | ", s.lines().limit(3).toList());
    }

    private static String exitValue(Process p) {
        try {
            return String.valueOf(p.exitValue());
        } catch (IllegalThreadStateException e) {
            return "?";
        }
    }

    private static void sleepMs(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
