package io.vhostblk.bench;

import io.vhostblk.bench.ComparePlan.Kind;
import io.vhostblk.bench.ComparePlan.Media;
import io.vhostblk.bench.ComparePlan.SystemSpec;
import io.vhostblk.bench.ComparePlan.Workload;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.ToDoubleFunction;

/** Medians, ratios and the target checks (issues 3 and 4) of the comparison benchmark. Pure functions. */
final class CompareStats {
    private CompareStats() {
    }

    /**
     * One measured run of one system on one workload; {@code error} null when it succeeded.
     * {@code allocShare}: on a new qcow2 image, the share of the run's writes (ramp included) that
     * allocated a cluster (allocated clusters after the run / writes submitted); NaN elsewhere.
     */
    record RunResult(double iops, double p50Us, double p99Us, double p999Us, double cpuUsPerIo, long ios, long errors,
                     double seconds, double frontendCpuPct, double fioReportedCpuUsPerIo, double allocShare, String error) {
        static RunResult failed(String error) {
            return new RunResult(Double.NaN, Double.NaN, Double.NaN, Double.NaN, Double.NaN, 0, 0, 0, Double.NaN, Double.NaN, Double.NaN,
                    error);
        }

        boolean ok() {
            return error == null;
        }

        RunResult withAllocShare(double share) {
            return new RunResult(iops, p50Us, p99Us, p999Us, cpuUsPerIo, ios, errors, seconds, frontendCpuPct, fioReportedCpuUsPerIo, share,
                    error);
        }
    }

    /** Medians over the successful repetitions; {@code runs} holds every repetition, failed ones too. */
    record Summary(Workload workload, SystemSpec system, List<RunResult> runs, double iops, double p50Us, double p99Us,
                   double p999Us, double cpuUsPerIo) {
        static Summary of(Workload w, SystemSpec s, List<RunResult> runs) {
            List<RunResult> ok = runs.stream().filter(RunResult::ok).toList();
            return new Summary(w, s, List.copyOf(runs), median(ok, RunResult::iops), median(ok, RunResult::p50Us),
                    median(ok, RunResult::p99Us), median(ok, RunResult::p999Us), median(ok, RunResult::cpuUsPerIo));
        }

        long failedRuns() {
            return runs.stream().filter(r -> !r.ok()).count();
        }

        boolean measured() {
            return runs.stream().anyMatch(RunResult::ok);
        }
    }

    /** One start of a backend process: ms from spawn to a listening socket, and VmRSS once idle. */
    record Startup(SystemSpec system, Media media, double startMs, long rssIdleKib) {
    }

    enum Status { PASS, MISS, NA }

    /**
     * One checked target. {@code value} is what was measured (a ratio, µs, MiB or ms),
     * {@code limit} the bound, {@code atMost} whether value must be ≤ limit (else ≥).
     */
    record Target(String text, Status status, double value, double limit, boolean atMost, String unit, String detail) {
        String line() {
            String v = Double.isFinite(value) ? fmt(value) + unit : "n/a";
            return String.format(Locale.ROOT, "%-4s %s: %s (limit %s %s%s)%s", status, text, v, atMost ? "<=" : ">=",
                    fmt(limit), unit, detail.isEmpty() ? "" : "; " + detail);
        }

        private static String fmt(double d) {
            return d >= 100 ? String.format(Locale.ROOT, "%.0f", d) : String.format(Locale.ROOT, "%.2f", d);
        }
    }

    // ------------------------------------------------------------------ basics

    /** Median of the finite values; NaN when there are none. */
    static double median(double... values) {
        double[] v = Arrays.stream(values).filter(Double::isFinite).sorted().toArray();
        if (v.length == 0) {
            return Double.NaN;
        }
        int m = v.length / 2;
        return v.length % 2 == 1 ? v[m] : (v[m - 1] + v[m]) / 2;
    }

    static <T> double median(List<T> items, ToDoubleFunction<T> f) {
        return median(items.stream().mapToDouble(f).toArray());
    }

    /** a / b; NaN unless both are finite and b is positive. */
    static double ratio(double a, double b) {
        if (!Double.isFinite(a) || !Double.isFinite(b) || b <= 0) {
            return Double.NaN;
        }
        return a / b;
    }

    static Status check(double value, double limit, boolean atMost) {
        if (!Double.isFinite(value)) {
            return Status.NA;
        }
        return (atMost ? value <= limit : value >= limit) ? Status.PASS : Status.MISS;
    }

    // ------------------------------------------------------------------ results table

    /** Summaries by workload id, then system, in plan order. */
    static final class Results {
        final Map<String, Map<SystemSpec, Summary>> rows = new LinkedHashMap<>();

        void put(Summary s) {
            rows.computeIfAbsent(s.workload().id(), k -> new LinkedHashMap<>()).put(s.system(), s);
        }

        Summary get(String workloadId, SystemSpec s) {
            Map<SystemSpec, Summary> r = rows.get(workloadId);
            Summary x = r == null ? null : r.get(s);
            return x != null && x.measured() ? x : null;
        }

        /** The measured vhostblk summaries of a row. */
        List<Summary> vhostblk(String workloadId) {
            Map<SystemSpec, Summary> r = rows.get(workloadId);
            if (r == null) {
                return List.of();
            }
            return r.values().stream().filter(s -> s.system().kind() == Kind.VHOSTBLK && s.measured()).toList();
        }

        double hostIops(String workloadId) {
            Summary h = get(workloadId, SystemSpec.HOST);
            return h == null ? Double.NaN : h.iops();
        }

        double qsd(String workloadId, ToDoubleFunction<Summary> f) {
            Summary q = get(workloadId, SystemSpec.QSD);
            return q == null ? Double.NaN : f.applyAsDouble(q);
        }

        /** vhostblk (or any system) IOPS relative to host fio on the same row. */
        double iopsVsHost(Summary s) {
            return ratio(s.iops(), hostIops(s.workload().id()));
        }

        double iopsVsQsd(Summary s) {
            return ratio(s.iops(), qsd(s.workload().id(), Summary::iops));
        }

        double cpuVsQsd(Summary s) {
            return ratio(s.cpuUsPerIo(), qsd(s.workload().id(), Summary::cpuUsPerIo));
        }

        double p50VsQsd(Summary s) {
            return ratio(s.p50Us(), qsd(s.workload().id(), Summary::p50Us));
        }

        /**
         * IOPS on a qcow2 image with allocated clusters relative to the same workload on the raw
         * RAM-disk file: vhostblk against the best vhostblk variant on raw, QSD against QSD.
         * NaN on other media or when the raw row was not measured.
         */
        double iopsVsRaw(Summary s) {
            Media raw = s.workload().media().rawTwin();
            if (raw == null) {
                return Double.NaN;
            }
            Workload w = s.workload();
            String id = new Workload(raw, w.rw(), w.iodepth(), w.queues(), w.poll()).id();
            return switch (s.system().kind()) {
                case VHOSTBLK -> ratio(s.iops(), vhostblk(id).stream().mapToDouble(Summary::iops).filter(Double::isFinite).max().orElse(Double.NaN));
                case QSD -> ratio(s.iops(), qsd(id, Summary::iops));
                case HOST -> Double.NaN;
            };
        }

        /** The measured vhostblk summary of a row with the highest IOPS, or null. */
        Summary bestVhostblk(String workloadId) {
            return vhostblk(workloadId).stream().filter(x -> Double.isFinite(x.iops()))
                    .max(Comparator.comparingDouble(Summary::iops)).orElse(null);
        }
    }

    // ------------------------------------------------------------------ targets

    /**
     * The targets of issue 3 and the qcow2 targets of issue 4, each checked on the best vhostblk
     * variant (engine, workers) of the row it concerns (named in the line); NA when a row or a
     * reference was not measured (quick mode, --only, --rows, a failed run).
     */
    static List<Target> targets(Results r, List<Startup> startups) {
        List<Target> t = new ArrayList<>();
        for (int q : new int[] {1, 2}) {
            for (String rw : List.of("randread", "randwrite")) {
                String id = new Workload(Media.DISK, rw, 128, q, false).id();
                t.add(best(r, id, "disk O_DIRECT " + rw + " qd128 q" + q + ": vhostblk/host fio", r::iopsVsHost, 0.99, false, "x", true));
            }
        }
        for (int q : new int[] {1, 2}) {
            for (String rw : List.of("randread", "randwrite")) {
                String id = new Workload(Media.RAM, rw, 128, q, false).id();
                t.add(best(r, id, "RAM disk " + rw + " qd128 q" + q + ": vhostblk/QSD", r::iopsVsQsd, 2.5, false, "x", true));
            }
        }
        for (String rw : List.of("randread", "randwrite")) {
            String id = new Workload(Media.RAM, rw, 128, 1, false).id();
            t.add(best(r, id, "RAM disk " + rw + " qd128 q1: vhostblk/host fio (single job)", r::iopsVsHost, 0.9, false, "x", true));
        }
        String lat = new Workload(Media.RAM, "randread", 1, 1, false).id();
        t.add(best(r, lat, "RAM disk randread qd1 p50 latency: vhostblk/QSD, no polling", r::p50VsQsd, 0.8, true, "x", false));
        String poll = new Workload(Media.RAM, "randread", 1, 1, true).id();
        t.add(best(r, poll, "RAM disk randread qd1 p50 latency with --poll-us " + ComparePlan.POLL_US, Summary::p50Us, 25, true, " us", false));
        for (Media m : Media.raw()) {
            for (int q : new int[] {1, 2}) {
                for (String rw : List.of("randread", "randwrite")) {
                    String id = new Workload(m, rw, 128, q, false).id();
                    t.add(best(r, id, "backend CPU per I/O " + m.id + " " + rw + " qd128 q" + q + ": vhostblk/QSD", r::cpuVsQsd, 0.3,
                            true, "x", false));
                }
            }
        }
        for (String rw : List.of("randread", "randwrite")) {
            t.add(qcow2VsRaw(r, rw));
        }
        String alloc = new Workload(Media.QCOW2_NEW, "randwrite", 128, 1, false).id();
        t.add(best(r, alloc, "qcow2 allocating randwrite qd128 q1 (new image): vhostblk/QSD, both qcow2", r::iopsVsQsd, 1.0, false, "x",
                true));
        for (String engine : List.of("io_uring", "threads")) {
            // issue 3's backend: starts on raw files (qcow2 starts are listed, not counted here)
            List<Startup> s = startups.stream().filter(x -> x.system().kind() == Kind.VHOSTBLK && engine.equals(x.system().engine())
                    && !x.media().qcow2).toList();
            double rss = median(s, x -> x.rssIdleKib() / 1024.0);
            double start = median(s, Startup::startMs);
            String n = s.isEmpty() ? "" : "median of " + s.size() + " start(s) on raw files";
            t.add(new Target("idle backend RSS, vhostblk " + engine, check(rss, 48, true), rss, 48, true, " MiB", n));
            t.add(new Target("start to listening, vhostblk " + engine, check(start, 300, true), start, 300, true, " ms", n));
        }
        return t;
    }

    /**
     * Issue 4: the best vhostblk variant on the qcow2 image with allocated clusters against the
     * best vhostblk variant on the raw RAM-disk file, same workload (4k, iodepth 128, 1 queue).
     */
    static Target qcow2VsRaw(Results r, String rw) {
        Workload q = new Workload(Media.QCOW2, rw, 128, 1, false);
        Workload raw = new Workload(Media.RAM, rw, 128, 1, false);
        String text = "qcow2 allocated " + rw + " qd128 q1: vhostblk qcow2/raw (RAM disk)";
        Summary a = r.bestVhostblk(q.id());
        Summary b = r.bestVhostblk(raw.id());
        double v = a == null || b == null ? Double.NaN : ratio(a.iops(), b.iops());
        String detail = a == null ? "qcow2 row not measured in this run"
                : b == null ? "raw row " + raw.label() + " not measured in this run"
                : a.system().label() + " vs " + b.system().label() + " on raw";
        return new Target(text, check(v, 0.95, false), v, 0.95, false, "x", detail);
    }

    /**
     * Checks {@code metric} of the vhostblk variant of row {@code id} that does best on it (highest
     * when {@code higherIsBetter}), against {@code limit}.
     */
    static Target best(Results r, String id, String text, ToDoubleFunction<Summary> metric, double limit, boolean atMost, String unit,
                       boolean higherIsBetter) {
        Summary best = null;
        double bestV = Double.NaN;
        for (Summary s : r.vhostblk(id)) {
            double v = metric.applyAsDouble(s);
            if (!Double.isFinite(v)) {
                continue;
            }
            if (best == null || (higherIsBetter ? v > bestV : v < bestV)) {
                best = s;
                bestV = v;
            }
        }
        String detail = best == null ? "not measured in this run" : best.system().label();
        return new Target(text, check(bestV, limit, atMost), bestV, limit, atMost, unit, detail);
    }

    /** Summaries sorted the way tables show them: plan order of rows, systems in base order. */
    static List<Summary> ordered(Results r) {
        List<Summary> out = new ArrayList<>();
        for (Map<SystemSpec, Summary> row : r.rows.values()) {
            row.values().stream().sorted(Comparator.comparingInt(s -> s.system().kind().ordinal())).forEach(out::add);
        }
        return out;
    }
}
