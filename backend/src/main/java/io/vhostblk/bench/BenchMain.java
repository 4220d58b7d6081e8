package io.vhostblk.bench;

import io.vhostblk.blk.BlkFeature;
import io.vhostblk.blk.BlkRequest;
import io.vhostblk.frontend.BlkClient;
import io.vhostblk.frontend.BlkDriver;
import io.vhostblk.frontend.DriverQueue;
import io.vhostblk.frontend.VhostUserFrontend;
import io.vhostblk.linux.ErrnoException;
import org.HdrHistogram.Histogram;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.DefaultParser;
import org.apache.commons.cli.HelpFormatter;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;
import org.apache.commons.cli.ParseException;

import java.io.PrintStream;
import java.io.PrintWriter;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * {@code vhostblk-bench}: drives a vhost-user-blk backend the way a guest would, through the
 * Java frontend ({@link BlkClient}), one thread per queue, and prints IOPS, bandwidth, latency
 * percentiles, errors and the benchmark's own CPU use.
 *
 * <p>Exit status: 0 all requests succeeded (and verified), 1 a request failed, data did not
 * verify or the run broke, 2 bad options.
 */
public final class BenchMain {
    static final String NAME = "vhostblk-bench";
    static final int MAX_BS = 4 << 20;
    static final int MAX_QUEUE_SIZE = 1024;
    /** How long to retry connecting while the socket is missing or refuses (a backend still starting). */
    static final long CONNECT_TIMEOUT_MS = 2_000;
    /** Lines printed on stderr with --marks at the edges of the measured window. */
    public static final String MARK_START = "#mark measure-start";
    public static final String MARK_END = "#mark measure-end";

    private BenchMain() {
    }

    public static void main(String[] args) {
        System.exit(run(args, System.out, System.err));
    }

    /** Usage problem: reported as one line, exit status 2. */
    static final class UsageException extends Exception {
        UsageException(String message) {
            super(message);
        }
    }

    static Options options() {
        Options o = new Options();
        o.addOption(Option.builder().longOpt("socket").hasArg().argName("PATH").desc("vhost-user-blk socket of the backend (required)").build());
        o.addOption(Option.builder().longOpt("rw").hasArg().argName("MODE")
                .desc("randread (default), randwrite, read, write or randrw").build());
        o.addOption(Option.builder().longOpt("mix").hasArg().argName("PCT").desc("randrw: percentage of reads (default 50)").build());
        o.addOption(Option.builder().longOpt("bs").hasArg().argName("N").desc("block size in bytes, multiple of 512; k/m suffixes (default 4k)").build());
        o.addOption(Option.builder().longOpt("iodepth").hasArg().argName("N").desc("requests in flight per queue (default 32)").build());
        o.addOption(Option.builder().longOpt("queues").hasArg().argName("N").desc("virtqueues, one thread each (default 1)").build());
        o.addOption(Option.builder().longOpt("runtime").hasArg().argName("S").desc("seconds to run (default 10)").build());
        o.addOption(Option.builder().longOpt("ramp").hasArg().argName("S").desc("seconds of warm-up before measuring (default 0)").build());
        o.addOption(Option.builder().longOpt("max-ios").hasArg().argName("N")
                .desc("stop submitting after N requests in all, ramp included (split over the queues): the run ends then or after "
                        + "--ramp + --runtime, whichever comes first; bounds what a run writes (default: no limit)").build());
        o.addOption(Option.builder().longOpt("ramp-ios").hasArg().argName("N")
                .desc("end the ramp after N requests (split over the queues) if that comes before --ramp seconds; "
                        + "the measured window then lasts --runtime from there (default: time only)").build());
        o.addOption(Option.builder().longOpt("size").hasArg().argName("BYTES")
                .desc("bytes of the device to use from offset 0; k/m/g suffixes (default: whole device)").build());
        o.addOption(Option.builder().longOpt("queue-size").hasArg().argName("N")
                .desc("ring size, power of two <= 1024 (default: fits iodepth, at least 128)").build());
        o.addOption(Option.builder().longOpt("segments").hasArg().argName("N").desc("data descriptors per request (default 1)").build());
        o.addOption(Option.builder().longOpt("indirect").desc("put each request in an indirect descriptor table").build());
        o.addOption(Option.builder().longOpt("event-idx").desc("negotiate VIRTIO_F_RING_EVENT_IDX").build());
        o.addOption(Option.builder().longOpt("poll").desc("busy-poll the used ring instead of sleeping on the call eventfd").build());
        o.addOption(Option.builder().longOpt("verify").desc("instead of the timed workload: write a stamped pattern over --size, "
                + "FLUSH, read it all back and check every sector").build());
        o.addOption(Option.builder().longOpt("json").desc("print the result as one JSON line").build());
        o.addOption(Option.builder().longOpt("marks").desc("print '" + MARK_START + "' and '" + MARK_END + "' lines on stderr "
                + "when the measured window opens and closes (for harnesses that sample other processes over it)").build());
        o.addOption(Option.builder("h").longOpt("help").desc("show this help").build());
        return o;
    }

    public static int run(String[] args, PrintStream out, PrintStream err) {
        BenchConfig cfg;
        try {
            CommandLine cl = new DefaultParser().parse(options(), args);
            if (cl.hasOption("help")) {
                PrintWriter w = new PrintWriter(out);
                new HelpFormatter().printHelp(w, 100, NAME + " --socket PATH [options]",
                        "Benchmark a vhost-user-blk backend through a Java virtio-blk frontend.", options(), 2, 2,
                        "Prints IOPS=... BW=...MiB/s lat p50=...us p99=...us p99.9=...us errors=N cpu=...% "
                                + "(cpu: this process, % of one core). Exit: 0 ok, 1 failed requests or verify mismatch, 2 bad options.");
                w.flush();
                return 0;
            }
            cfg = parse(cl);
        } catch (ParseException | UsageException e) {
            err.println(NAME + ": " + e.getMessage() + " (see --help)");
            return 2;
        }
        try {
            return bench(cfg, out, err);
        } catch (UsageException e) {
            err.println(NAME + ": " + e.getMessage());
            return 2;
        }
    }

    // ------------------------------------------------------------------ options

    static BenchConfig parse(CommandLine cl) throws UsageException {
        if (!cl.getArgList().isEmpty()) {
            throw new UsageException("unexpected argument '" + cl.getArgList().getFirst() + "'");
        }
        String socket = cl.getOptionValue("socket");
        if (socket == null || socket.isEmpty()) {
            throw new UsageException("--socket PATH is required");
        }
        String rwText = cl.getOptionValue("rw", "randread");
        BenchConfig.Workload rw = BenchConfig.Workload.parse(rwText);
        if (rw == null) {
            throw new UsageException("--rw must be randread, randwrite, read, write or randrw, not '" + rwText + "'");
        }
        int mix = (int) intOption(cl, "mix", 50, 0, 100);
        long bs = size(cl, "bs", 4096);
        if (bs <= 0 || bs % BlkRequest.SECTOR_SIZE != 0 || bs > MAX_BS) {
            throw new UsageException("--bs must be a positive multiple of 512 up to " + MAX_BS + ", not " + cl.getOptionValue("bs"));
        }
        int iodepth = (int) intOption(cl, "iodepth", 32, 1, MAX_QUEUE_SIZE);
        int queues = (int) intOption(cl, "queues", 1, 1, 64);
        double runtime = doubleOption(cl, "runtime", 10, 0.001, 86_400);
        double ramp = doubleOption(cl, "ramp", 0, 0, 86_400);
        long size = cl.hasOption("size") ? size(cl, "size", 0) : -1;
        if (cl.hasOption("size") && size < bs) {
            throw new UsageException("--size must be at least --bs (" + bs + "), not " + cl.getOptionValue("size"));
        }
        int segments = (int) intOption(cl, "segments", 1, 1, 256);
        if (segments > bs / BlkRequest.SECTOR_SIZE && segments > bs) {
            throw new UsageException("--segments " + segments + " exceeds the bytes of a block");
        }
        boolean indirect = cl.hasOption("indirect");
        int perRequest = indirect ? 1 : 2 + segments;
        int queueSize;
        if (cl.hasOption("queue-size")) {
            queueSize = (int) intOption(cl, "queue-size", 128, 1, MAX_QUEUE_SIZE);
            if (Integer.bitCount(queueSize) != 1) {
                throw new UsageException("--queue-size must be a power of two, not " + queueSize);
            }
        } else {
            queueSize = Math.max(128, Integer.highestOneBit(Math.max(1, iodepth * perRequest - 1)) << 1);
        }
        if ((long) iodepth * perRequest > queueSize || queueSize > MAX_QUEUE_SIZE) {
            throw new UsageException("--iodepth " + iodepth + " needs " + (long) iodepth * perRequest
                    + " ring descriptors, more than a ring of " + Math.min(queueSize, MAX_QUEUE_SIZE) + " has"
                    + (indirect ? "" : " (try --indirect)"));
        }
        long maxIos = intOption(cl, "max-ios", 0, queues, Long.MAX_VALUE);
        long rampIos = intOption(cl, "ramp-ios", 0, queues, Long.MAX_VALUE);
        if (maxIos > 0 && rampIos >= maxIos) {
            throw new UsageException("--ramp-ios " + rampIos + " leaves nothing to measure of --max-ios " + maxIos);
        }
        return new BenchConfig(socket, rw, mix, (int) bs, iodepth, queues, runtime, ramp, size, indirect,
                cl.hasOption("event-idx"), cl.hasOption("poll"), cl.hasOption("verify"), cl.hasOption("json"), queueSize, segments,
                cl.hasOption("marks"), maxIos, rampIos);
    }

    private static long intOption(CommandLine cl, String name, long dflt, long min, long max) throws UsageException {
        String v = cl.getOptionValue(name);
        if (v == null) {
            return dflt;
        }
        long n;
        try {
            n = Long.parseLong(v.trim());
        } catch (NumberFormatException e) {
            throw new UsageException("--" + name + " wants an integer, not '" + v + "'");
        }
        if (n < min || n > max) {
            throw new UsageException("--" + name + " must be in " + min + ".." + max + ", not " + n);
        }
        return n;
    }

    private static double doubleOption(CommandLine cl, String name, double dflt, double min, double max) throws UsageException {
        String v = cl.getOptionValue(name);
        if (v == null) {
            return dflt;
        }
        double n;
        try {
            n = Double.parseDouble(v.trim());
        } catch (NumberFormatException e) {
            throw new UsageException("--" + name + " wants a number of seconds, not '" + v + "'");
        }
        if (!(n >= min && n <= max)) {
            throw new UsageException("--" + name + " must be in " + min + ".." + (long) max + " seconds, not " + v);
        }
        return n;
    }

    /** Byte counts with optional k/m/g/t suffix (binary), e.g. 4k, 1M, 2GiB. */
    static long size(CommandLine cl, String name, long dflt) throws UsageException {
        String v = cl.getOptionValue(name);
        if (v == null) {
            return dflt;
        }
        long n = parseSize(v);
        if (n < 0) {
            throw new UsageException("--" + name + " wants a byte count such as 4096, 4k or 1g, not '" + v + "'");
        }
        return n;
    }

    static long parseSize(String text) {
        String s = text.trim().toLowerCase(Locale.ROOT);
        if (s.endsWith("ib")) {
            s = s.substring(0, s.length() - 2);
        } else if (s.endsWith("b")) {
            s = s.substring(0, s.length() - 1);
        }
        int shift = 0;
        if (!s.isEmpty()) {
            switch (s.charAt(s.length() - 1)) {
                case 'k' -> shift = 10;
                case 'm' -> shift = 20;
                case 'g' -> shift = 30;
                case 't' -> shift = 40;
                default -> shift = -1;
            }
            if (shift >= 0) {
                s = s.substring(0, s.length() - 1);
            } else {
                shift = 0;
            }
        }
        try {
            long n = Long.parseLong(s);
            if (n < 0 || (shift > 0 && n > (Long.MAX_VALUE >> shift))) {
                return -1;
            }
            return n << shift;
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    // ------------------------------------------------------------------ the run

    private static int bench(BenchConfig cfg, PrintStream out, PrintStream err) throws UsageException {
        BlkClient.Options o = BlkClient.Options.defaults().queues(cfg.queues()).queueSize(cfg.queueSize())
                .eventIdx(cfg.eventIdx()).indirect(cfg.indirect()).poll(cfg.poll()).slots(cfg.iodepth(), cfg.bs())
                .dataSegments(cfg.segments()).extra(1 << 16, 0).populate(true);
        VhostUserFrontend fe;
        try {
            fe = VhostUserFrontend.connect(cfg.socket(), CONNECT_TIMEOUT_MS);
        } catch (ErrnoException e) {
            err.println(NAME + ": cannot connect to " + cfg.socket() + ": " + e.getMessage());
            return 1;
        }
        BlkClient client;
        try {
            client = BlkClient.open(fe, o);
        } catch (IllegalStateException e) {
            // the backend cannot do what the options ask (queues, features)
            throw new UsageException(e.getMessage());
        } catch (RuntimeException e) {
            err.println(NAME + ": setting up the device failed: " + e);
            return 1;
        }
        try (client) {
            long capacity = client.config().capacityBytes();
            long size = cfg.size() < 0 ? capacity : cfg.size();
            if (size > capacity) {
                throw new UsageException("--size " + size + " exceeds the device capacity of " + capacity + " bytes");
            }
            long blocks = size / cfg.bs();
            if (blocks < cfg.queues()) {
                throw new UsageException("the device range holds " + blocks + " blocks of " + cfg.bs() + " bytes, fewer than --queues");
            }
            boolean readOnly = client.negotiation().has(BlkFeature.RO);
            if (readOnly && (cfg.verify() || cfg.rw().readPct() < 100)) {
                err.println(NAME + ": the device is read-only (VIRTIO_BLK_F_RO); use --rw randread or read");
                return 1;
            }
            long generation = new SplittableRandom().nextLong() | 1;
            // non-zero write payload (the verify pass stamps its own)
            SplittableRandom fill = new SplittableRandom(42);
            for (int q = 0; q < cfg.queues(); q++) {
                BlkDriver d = client.driver(q);
                for (int s = 0; s < d.slots(); s++) {
                    MemorySegment m = d.data(s);
                    for (long off = 0; off + 8 <= m.byteSize(); off += 8) {
                        m.set(JAVA_LONG, off, fill.nextLong());
                    }
                }
            }

            List<Worker> workers = new ArrayList<>();
            List<Thread> threads = new ArrayList<>();
            for (int q = 0; q < cfg.queues(); q++) {
                long first;
                long count;
                if (cfg.rw().random && !cfg.verify()) {
                    first = 0;
                    count = blocks;
                } else {
                    first = blocks * q / cfg.queues();
                    count = blocks * (q + 1) / cfg.queues() - first;
                }
                Worker w = new Worker(q, client.driver(q), cfg, first, count, 0x9E3779B97F4A7C15L * (q + 1) ^ System.nanoTime(), generation);
                workers.add(w);
                Thread t = new Thread(w, "bench-q" + q);
                t.setDaemon(true);
                threads.add(t);
            }
            long start = System.nanoTime();
            long measureFrom = cfg.verify() ? start : start + (long) (cfg.rampS() * 1e9);
            long end = cfg.verify() ? Long.MAX_VALUE : measureFrom + (long) (cfg.runtimeS() * 1e9);
            java.util.concurrent.CountDownLatch rampDone = new java.util.concurrent.CountDownLatch(1);
            for (int q = 0; q < workers.size(); q++) {
                Worker w = workers.get(q);
                w.startNanos = start;
                w.measureFromNanos = measureFrom;
                w.endNanos = end;
                w.maxSubmits = cfg.verify() ? Long.MAX_VALUE : cfg.share(cfg.maxIos(), q);
                w.rampSubmits = cfg.verify() ? Long.MAX_VALUE : cfg.share(cfg.rampIos(), q);
                w.rampDone = rampDone;
            }
            CpuUsage.Sample cpu0 = CpuUsage.process();
            boolean ramping = !cfg.verify() && cfg.rampS() > 0;
            if (!ramping) {
                mark(cfg, err, MARK_START);
            }
            for (Thread t : threads) {
                t.start();
            }
            if (ramping) {
                // until --ramp seconds have passed, or a queue has submitted its --ramp-ios share
                awaitRampEnd(rampDone, measureFrom);
                mark(cfg, err, MARK_START);
                cpu0 = CpuUsage.process();
            }
            long measuredStart = System.nanoTime();
            joinAll(threads, workers);
            mark(cfg, err, MARK_END);
            long wall = System.nanoTime() - Math.max(measuredStart, measureFrom);
            if (!cfg.verify()) {
                // the measured window: ramp end to the end of the run (incl. draining in-flight requests)
                long from = measureFrom;
                for (Worker w : workers) {
                    from = Math.min(from, w.measureStartNanos);
                }
                wall = System.nanoTime() - from;
            }
            CpuUsage.Sample cpu = CpuUsage.process().minus(cpu0);

            Result r = Result.of(cfg, workers, client, wall, cpu, size, generation);
            for (Worker w : workers) {
                for (String p : w.problems) {
                    err.println(NAME + ": " + p);
                }
                if (w.failure != null) {
                    err.println(NAME + ": queue " + workers.indexOf(w) + " failed: " + w.failure);
                }
            }
            out.println(cfg.json() ? r.json() : r.text());
            out.flush();
            boolean ok = r.errors == 0 && r.mismatches == 0 && workers.stream().allMatch(w -> w.failure == null);
            if (ok) {
                for (int q = 0; q < cfg.queues(); q++) {
                    client.frontend().stopQueue(client.queue(q));
                }
            }
            return ok ? 0 : 1;
        } catch (UsageException e) {
            throw e;
        } catch (RuntimeException e) {
            err.println(NAME + ": " + e);
            return 1;
        }
    }

    private static void mark(BenchConfig cfg, PrintStream err, String line) {
        if (cfg.marks()) {
            err.println(line);
            err.flush();
        }
    }

    private static void awaitRampEnd(java.util.concurrent.CountDownLatch rampDone, long nanos) {
        long left = nanos - System.nanoTime();
        if (left <= 0) {
            return;
        }
        try {
            rampDone.await(left, java.util.concurrent.TimeUnit.NANOSECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Waits for the workers, waking up once a second to look for stalled queues. */
    private static void joinAll(List<Thread> threads, List<Worker> workers) {
        for (Thread t : threads) {
            while (t.isAlive()) {
                try {
                    t.join(1000);
                    long now = System.nanoTime();
                    for (Worker w : workers) {
                        w.checkStalled(now);
                    }
                } catch (InterruptedException e) {
                    for (Worker w : workers) {
                        w.failure = e;
                    }
                    Thread.currentThread().interrupt();
                    return;
                }
            }
        }
    }

    // ------------------------------------------------------------------ result

    static final class Result {
        BenchConfig cfg;
        long ios;
        /** Requests submitted in all, the ramp's included. */
        long submitted;
        long reads;
        long writes;
        long errors;
        long verified;
        long mismatches;
        double seconds;
        double iops;
        double mibps;
        Histogram lat;
        double cpuPct;
        double cpuUserPct;
        double cpuSysPct;
        double workerCpuPct;
        long kicks;
        long kicksSuppressed;
        long sleeps;
        long workerAlloc;
        long size;
        long generation;

        static Result of(BenchConfig cfg, List<Worker> workers, BlkClient client, long wallNanos, CpuUsage.Sample cpu, long size,
                         long generation) {
            Result r = new Result();
            r.cfg = cfg;
            r.size = size;
            r.generation = generation;
            r.lat = new Histogram(60_000_000_000L, 3);
            long workerCpu = 0;
            for (Worker w : workers) {
                r.ios += w.ios;
                r.submitted += w.submitted;
                r.reads += w.readIos;
                r.writes += w.writeIos;
                r.errors += w.errors;
                r.verified += w.verifiedSectors;
                r.mismatches += w.mismatchedSectors;
                r.lat.add(w.latency);
                workerCpu += w.threadCpu.totalNanos();
                r.workerAlloc += w.allocated;
            }
            for (int q = 0; q < client.queueCount(); q++) {
                DriverQueue dq = client.queue(q);
                r.kicks += dq.kicks();
                r.kicksSuppressed += dq.kicksSuppressed();
                r.sleeps += dq.sleeps();
            }
            r.seconds = wallNanos / 1e9;
            r.iops = r.ios / r.seconds;
            r.mibps = r.iops * cfg.bs() / (1024.0 * 1024.0);
            r.cpuPct = 100.0 * cpu.totalNanos() / wallNanos;
            r.cpuUserPct = 100.0 * cpu.userNanos() / wallNanos;
            r.cpuSysPct = 100.0 * cpu.sysNanos() / wallNanos;
            r.workerCpuPct = 100.0 * workerCpu / wallNanos;
            return r;
        }

        private double us(double percentile) {
            return lat.getTotalCount() == 0 ? 0 : lat.getValueAtPercentile(percentile) / 1000.0;
        }

        String text() {
            String s = String.format(Locale.ROOT, "IOPS=%.0f BW=%.1fMiB/s lat p50=%.1fus p99=%.1fus p99.9=%.1fus errors=%d cpu=%.1f%%",
                    iops, mibps, us(50), us(99), us(99.9), errors, cpuPct);
            if (cfg.verify()) {
                s += String.format(Locale.ROOT, " verified=%d mismatches=%d", verified, mismatches);
            }
            return s;
        }

        String json() {
            StringBuilder b = new StringBuilder(512);
            b.append('{');
            str(b, "socket", cfg.socket()).append(',');
            str(b, "rw", cfg.verify() ? "verify" : cfg.rw().name).append(',');
            num(b, "mix_read_pct", cfg.rw().mixed ? cfg.mixReadPct() : cfg.rw().readPct()).append(',');
            num(b, "bs", cfg.bs()).append(',');
            num(b, "iodepth", cfg.iodepth()).append(',');
            num(b, "queues", cfg.queues()).append(',');
            num(b, "queue_size", cfg.queueSize()).append(',');
            num(b, "segments", cfg.segments()).append(',');
            bool(b, "indirect", cfg.indirect()).append(',');
            bool(b, "event_idx", cfg.eventIdx()).append(',');
            bool(b, "poll", cfg.poll()).append(',');
            num(b, "size", size).append(',');
            dbl(b, "seconds", seconds, 3).append(',');
            num(b, "ios", ios).append(',');
            num(b, "submitted", submitted).append(',');
            if (cfg.maxIos() > 0) {
                num(b, "max_ios", cfg.maxIos()).append(',');
            }
            if (cfg.rampIos() > 0) {
                num(b, "ramp_ios", cfg.rampIos()).append(',');
            }
            num(b, "reads", reads).append(',');
            num(b, "writes", writes).append(',');
            dbl(b, "iops", iops, 1).append(',');
            dbl(b, "bw_mib_s", mibps, 2).append(',');
            b.append("\"lat_us\":{");
            dbl(b, "min", lat.getTotalCount() == 0 ? 0 : lat.getMinValue() / 1000.0, 1).append(',');
            dbl(b, "mean", lat.getTotalCount() == 0 ? 0 : lat.getMean() / 1000.0, 1).append(',');
            dbl(b, "p50", us(50), 1).append(',');
            dbl(b, "p99", us(99), 1).append(',');
            dbl(b, "p99_9", us(99.9), 1).append(',');
            dbl(b, "max", lat.getTotalCount() == 0 ? 0 : lat.getMaxValue() / 1000.0, 1).append("},");
            num(b, "errors", errors).append(',');
            dbl(b, "cpu_pct", cpuPct, 1).append(',');
            dbl(b, "cpu_user_pct", cpuUserPct, 1).append(',');
            dbl(b, "cpu_sys_pct", cpuSysPct, 1).append(',');
            dbl(b, "worker_cpu_pct", workerCpuPct, 1).append(',');
            num(b, "kicks", kicks).append(',');
            num(b, "kicks_suppressed", kicksSuppressed).append(',');
            num(b, "sleeps", sleeps).append(',');
            num(b, "worker_alloc_bytes", workerAlloc);
            if (cfg.verify()) {
                b.append(",\"verify\":{");
                num(b, "sectors", verified).append(',');
                num(b, "mismatches", mismatches).append(',');
                str(b, "generation", "0x" + Long.toHexString(generation)).append('}');
            }
            return b.append('}').toString();
        }

        private static StringBuilder key(StringBuilder b, String k) {
            return b.append('"').append(k).append("\":");
        }

        private static StringBuilder num(StringBuilder b, String k, long v) {
            return key(b, k).append(v);
        }

        private static StringBuilder dbl(StringBuilder b, String k, double v, int decimals) {
            if (!Double.isFinite(v)) {
                return key(b, k).append("null");
            }
            return key(b, k).append(String.format(Locale.ROOT, "%." + decimals + "f", v));
        }

        private static StringBuilder bool(StringBuilder b, String k, boolean v) {
            return key(b, k).append(v);
        }

        private static StringBuilder str(StringBuilder b, String k, String v) {
            return key(b, k).append(io.vhostblk.control.Json.quote(v));
        }
    }
}
