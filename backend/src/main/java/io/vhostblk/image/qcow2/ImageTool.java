package io.vhostblk.image.qcow2;

import io.vhostblk.control.Json;
import io.vhostblk.linux.Libc;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * {@code vhostblk image create|info|check|map}: the operator's qcow2 tool, with qemu-img's
 * arguments and output shapes.
 */
public final class ImageTool {
    private final PrintStream out;
    private final PrintStream err;

    ImageTool(PrintStream out, PrintStream err) {
        this.out = out;
        this.err = err;
    }

    public static void main(String[] args) {
        System.exit(new ImageTool(System.out, System.err).run(args));
    }

    static final String USAGE = """
            usage: vhostblk image create [-f qcow2] [-o opt=val,...] [-b backing [-F fmt]] FILE [SIZE]
                   vhostblk image info [--output=human|json] [-U] FILE
                   vhostblk image check [--output=human|json] [-r leaks|all] [-U] FILE
                   vhostblk image map [--output=human|json] [-U] FILE
            create options: size, cluster_size (512..2M), compat (0.10|1.1), refcount_bits (1..64),
              extended_l2, lazy_refcounts, compression_type (zlib|zstd), backing_file, backing_fmt,
              data_file, data_file_raw, preallocation (off|metadata)""";

    int run(String[] args) {
        if (args.length == 0 || args[0].equals("-h") || args[0].equals("--help")) {
            out.println(USAGE);
            return args.length == 0 ? 1 : 0;
        }
        String cmd = args[0];
        List<String> pos = new ArrayList<>();
        String output = "human";
        String repair = null;
        boolean noLock = false;
        Qcow2Create.Spec spec = new Qcow2Create.Spec();
        try {
            for (int i = 1; i < args.length; i++) {
                String a = args[i];
                switch (a) {
                    case "-f" -> {
                        String f = args[++i];
                        if (!f.equals("qcow2")) {
                            throw new IllegalArgumentException("only -f qcow2 is supported");
                        }
                    }
                    case "-o" -> {
                        for (String kv : args[++i].split(",")) {
                            int eq = kv.indexOf('=');
                            if (eq < 0) {
                                throw new IllegalArgumentException("-o wants name=value, not '" + kv + "'");
                            }
                            spec.option(kv.substring(0, eq), kv.substring(eq + 1));
                        }
                    }
                    case "-b" -> spec.backingFile = args[++i];
                    case "-F" -> spec.backingFormat = args[++i];
                    case "-r" -> repair = args[++i];
                    case "-U", "--force-share" -> noLock = true;
                    case "--output" -> output = args[++i];
                    default -> {
                        if (a.startsWith("--output=")) {
                            output = a.substring(9);
                        } else if (a.startsWith("-") && a.length() > 1) {
                            throw new IllegalArgumentException("unknown option " + a);
                        } else {
                            pos.add(a);
                        }
                    }
                }
            }
            if (!output.equals("human") && !output.equals("json")) {
                throw new IllegalArgumentException("--output must be human or json");
            }
            boolean json = output.equals("json");
            Options opts = Options.defaults().withLock(!noLock);
            return switch (cmd) {
                case "create" -> create(pos, spec);
                case "info" -> info(one(pos), json, opts);
                case "check" -> check(one(pos), json, repair, opts);
                case "map" -> map(one(pos), json, opts);
                default -> throw new IllegalArgumentException("unknown command '" + cmd + "'\n" + USAGE);
            };
        } catch (IllegalArgumentException | ArrayIndexOutOfBoundsException e) {
            err.println("vhostblk image: " + (e instanceof ArrayIndexOutOfBoundsException ? "an option lacks its value" : e.getMessage()));
            return 1;
        } catch (Qcow2Exception e) {
            err.println("vhostblk image: " + e.getMessage());
            return 1;
        }
    }

    private static String one(List<String> pos) {
        if (pos.size() != 1) {
            throw new IllegalArgumentException("expected one image file\n" + USAGE);
        }
        return pos.getFirst();
    }

    private int create(List<String> pos, Qcow2Create.Spec spec) {
        if (pos.isEmpty() || pos.size() > 2) {
            throw new IllegalArgumentException("expected FILE [SIZE]\n" + USAGE);
        }
        if (pos.size() == 2) {
            spec.size = Qcow2Create.parseSize(pos.get(1));
        }
        if (spec.backingFile != null && spec.backingFormat == null) {
            throw new IllegalArgumentException("a backing file needs its format (-F qcow2 or -F raw)");
        }
        Qcow2Create.create(pos.getFirst(), spec);
        out.println("Formatting '" + pos.getFirst() + "', fmt=qcow2 cluster_size=" + spec.clusterSize
                + " compat=" + (spec.version == 2 ? "0.10" : "1.1") + " size=" + spec.size);
        return 0;
    }

    static String human(long n) {
        String[] u = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
        double v = n;
        int i = 0;
        while (v >= 1024 && i < u.length - 1) {
            v /= 1024;
            i++;
        }
        if (i == 0) {
            return n + " B";
        }
        String s = String.format(Locale.ROOT, "%.3g", v);
        if (s.contains(".")) {
            s = s.replaceAll("0+$", "").replaceAll("\\.$", "");
        }
        return s + " " + u[i];
    }

    private int info(String path, boolean json, Options opts) {
        try (Qcow2Image img = Qcow2Image.open(path, true, opts)) {
            Qcow2Header h = img.hdr;
            long actual = Libc.fstat(img.file.fd).blocks() * 512;
            List<Bitmaps.Info> bms = img.bitmaps.list();
            if (json) {
                StringBuilder b = new StringBuilder("{\n");
                b.append("    \"virtual-size\": ").append(img.size()).append(",\n");
                b.append("    \"filename\": ").append(Json.quote(path)).append(",\n");
                b.append("    \"cluster-size\": ").append(img.cs).append(",\n");
                b.append("    \"format\": \"qcow2\",\n");
                b.append("    \"actual-size\": ").append(actual).append(",\n");
                if (h.backingFile != null) {
                    b.append("    \"backing-filename\": ").append(Json.quote(h.backingFile)).append(",\n");
                    b.append("    \"full-backing-filename\": ").append(Json.quote(Qcow2Image.resolveRelative(path, h.backingFile))).append(",\n");
                    if (h.backingFormat != null) {
                        b.append("    \"backing-filename-format\": ").append(Json.quote(h.backingFormat)).append(",\n");
                    }
                }
                b.append("    \"format-specific\": {\n        \"type\": \"qcow2\",\n        \"data\": {\n");
                b.append("            \"compat\": \"").append(h.version == 2 ? "0.10" : "1.1").append("\",\n");
                if (h.version >= 3) {
                    if (h.dataFile != null) {
                        b.append("            \"data-file\": ").append(Json.quote(h.dataFile)).append(",\n");
                        b.append("            \"data-file-raw\": ").append((h.autoclear & Qcow2Header.AUTOCLEAR_DATA_FILE_RAW) != 0).append(",\n");
                    }
                    b.append("            \"compression-type\": \"").append(h.compressionType == 1 ? "zstd" : "zlib").append("\",\n");
                    b.append("            \"lazy-refcounts\": ").append((h.compatible & Qcow2Header.COMPAT_LAZY_REFCOUNTS) != 0).append(",\n");
                    if (!bms.isEmpty()) {
                        b.append("            \"bitmaps\": [\n");
                        for (int i = 0; i < bms.size(); i++) {
                            Bitmaps.Info bi = bms.get(i);
                            b.append("                {\n                    \"flags\": [");
                            List<String> fl = bi.flagNames();
                            for (int j = 0; j < fl.size(); j++) {
                                b.append(j > 0 ? ", " : "").append(Json.quote(fl.get(j)));
                            }
                            b.append("],\n                    \"name\": ").append(Json.quote(bi.name())).append(",\n");
                            b.append("                    \"granularity\": ").append(bi.granularity()).append("\n                }")
                                    .append(i + 1 < bms.size() ? ",\n" : "\n");
                        }
                        b.append("            ],\n");
                    }
                    b.append("            \"refcount-bits\": ").append(1 << h.refcountOrder).append(",\n");
                    b.append("            \"corrupt\": ").append((h.incompatible & Qcow2Header.INCOMPAT_CORRUPT) != 0).append(",\n");
                    b.append("            \"extended-l2\": ").append(h.extendedL2()).append("\n");
                } else {
                    b.setLength(b.length() - 2);
                    b.append("\n");
                }
                b.append("        }\n    },\n");
                b.append("    \"dirty-flag\": ").append((h.incompatible & Qcow2Header.INCOMPAT_DIRTY) != 0).append("\n}");
                out.println(b);
            } else {
                out.println("image: " + path);
                out.println("file format: qcow2");
                out.println("virtual size: " + human(img.size()) + " (" + img.size() + " bytes)");
                out.println("disk size: " + human(actual));
                out.println("cluster_size: " + img.cs);
                if (h.backingFile != null) {
                    out.println("backing file: " + h.backingFile);
                    if (h.backingFormat != null) {
                        out.println("backing file format: " + h.backingFormat);
                    }
                }
                out.println("Format specific information:");
                out.println("    compat: " + (h.version == 2 ? "0.10" : "1.1"));
                if (h.version >= 3) {
                    out.println("    compression type: " + (h.compressionType == 1 ? "zstd" : "zlib"));
                    out.println("    lazy refcounts: " + ((h.compatible & Qcow2Header.COMPAT_LAZY_REFCOUNTS) != 0));
                    if (!bms.isEmpty()) {
                        out.println("    bitmaps:");
                        for (Bitmaps.Info bi : bms) {
                            out.println("        [" + bms.indexOf(bi) + "]:");
                            out.println("            flags:");
                            int j = 0;
                            for (String f : bi.flagNames()) {
                                out.println("                [" + j++ + "]: " + f);
                            }
                            out.println("            name: " + bi.name());
                            out.println("            granularity: " + bi.granularity());
                        }
                    }
                    out.println("    refcount bits: " + (1 << h.refcountOrder));
                    out.println("    corrupt: " + ((h.incompatible & Qcow2Header.INCOMPAT_CORRUPT) != 0));
                    out.println("    extended l2: " + h.extendedL2());
                    if (h.dataFile != null) {
                        out.println("    data file: " + h.dataFile);
                        out.println("    data file raw: " + ((h.autoclear & Qcow2Header.AUTOCLEAR_DATA_FILE_RAW) != 0));
                    }
                }
            }
        }
        return 0;
    }

    private int check(String path, boolean json, String repair, Options opts) {
        if (repair != null && !repair.equals("leaks") && !repair.equals("all")) {
            throw new IllegalArgumentException("-r must be leaks or all");
        }
        Qcow2Check.Result r;
        if (repair != null) {
            try (Qcow2Image img = Qcow2Image.open(path, false, opts)) {
                Qcow2Check.Result before = Qcow2Check.check(img);
                if (before.leaks() + before.corruptions() > 0) {
                    if (before.corruptions() > 0 && repair.equals("leaks")) {
                        throw new Qcow2Exception(path + ": has " + before.corruptions() + " corruptions; use -r all");
                    }
                    Qcow2Check.repair(img);
                    if (!json) {
                        out.println("The following inconsistencies were found and repaired:\n\n    " + before.leaks()
                                + " leaked clusters\n    " + before.corruptions() + " corruptions\n\nDouble checking the fixed image now...");
                    }
                }
                r = Qcow2Check.check(img);
            }
        } else {
            try (Qcow2Image img = Qcow2Image.open(path, true, opts)) {
                r = Qcow2Check.check(img);
            }
        }
        if (json) {
            StringBuilder b = new StringBuilder("{\n");
            b.append("    \"image-end-offset\": ").append(r.imageEndOffset()).append(",\n");
            b.append("    \"total-clusters\": ").append(r.totalClusters()).append(",\n");
            b.append("    \"check-errors\": ").append(r.checkErrors()).append(",\n");
            if (r.leaks() > 0) {
                b.append("    \"leaks\": ").append(r.leaks()).append(",\n");
            }
            if (r.corruptions() > 0) {
                b.append("    \"corruptions\": ").append(r.corruptions()).append(",\n");
            }
            b.append("    \"allocated-clusters\": ").append(r.allocatedClusters()).append(",\n");
            b.append("    \"filename\": ").append(Json.quote(path)).append(",\n");
            b.append("    \"format\": \"qcow2\",\n");
            b.append("    \"fragmented-clusters\": ").append(r.fragmentedClusters()).append(",\n");
            b.append("    \"compressed-clusters\": ").append(r.compressedClusters()).append("\n}");
            out.println(b);
        } else {
            for (String m : r.messages()) {
                out.println(m);
            }
            if (r.corruptions() == 0 && r.leaks() == 0) {
                out.println("No errors were found on the image.");
            }
            if (r.leaks() > 0) {
                out.println("\n" + r.leaks() + " leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.");
            }
            if (r.corruptions() > 0) {
                out.println("\n" + r.corruptions() + " errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.");
            }
            long t = Math.max(1, r.totalClusters());
            out.printf(Locale.ROOT, "%d/%d = %.2f%% allocated, %.2f%% fragmented, %.2f%% compressed clusters%n",
                    r.allocatedClusters(), r.totalClusters(), 100.0 * r.allocatedClusters() / t,
                    r.allocatedClusters() == 0 ? 0.0 : 100.0 * r.fragmentedClusters() / r.allocatedClusters(),
                    r.allocatedClusters() == 0 ? 0.0 : 100.0 * r.compressedClusters() / r.allocatedClusters());
            out.println("Image end offset: " + r.imageEndOffset());
        }
        return r.corruptions() > 0 ? 2 : r.leaks() > 0 ? 3 : 0;
    }

    /** Merged extents of the whole image. */
    static List<Qcow2Image.Extent> extents(Qcow2Image img) {
        List<Qcow2Image.Extent> l = new ArrayList<>();
        long off = 0;
        while (off < img.size()) {
            Qcow2Image.Extent x = img.blockStatus(off, img.size() - off, 0);
            if (!l.isEmpty()) {
                Qcow2Image.Extent p = l.getLast();
                boolean same = p.depth() == x.depth() && p.present() == x.present() && p.zero() == x.zero()
                        && p.data() == x.data() && java.util.Objects.equals(p.file(), x.file())
                        && ((p.offset() < 0 && x.offset() < 0) || (p.offset() >= 0 && p.offset() + p.length() == x.offset()));
                if (same) {
                    l.set(l.size() - 1, new Qcow2Image.Extent(p.start(), p.length() + x.length(), p.depth(), p.present(),
                            p.zero(), p.data(), p.offset(), p.file()));
                    off += x.length();
                    continue;
                }
            }
            l.add(x);
            off += x.length();
        }
        return l;
    }

    private int map(String path, boolean json, Options opts) {
        try (Qcow2Image img = Qcow2Image.open(path, true, opts)) {
            List<Qcow2Image.Extent> l = extents(img);
            if (json) {
                StringBuilder b = new StringBuilder("[");
                for (int i = 0; i < l.size(); i++) {
                    Qcow2Image.Extent x = l.get(i);
                    b.append(i > 0 ? ",\n" : "").append("{ \"start\": ").append(x.start()).append(", \"length\": ").append(x.length())
                            .append(", \"depth\": ").append(x.depth()).append(", \"present\": ").append(x.present())
                            .append(", \"zero\": ").append(x.zero()).append(", \"data\": ").append(x.data());
                    if (x.offset() >= 0) {
                        b.append(", \"offset\": ").append(x.offset());
                    }
                    b.append("}");
                }
                out.println(b.append("]"));
            } else {
                out.printf("%-16s%-16s%-16s%s%n", "Offset", "Length", "Mapped to", "File");
                for (Qcow2Image.Extent x : l) {
                    if (x.data() && x.offset() >= 0) {
                        out.printf("%-16s%-16s%-16s%s%n", "0x" + Long.toHexString(x.start()), "0x" + Long.toHexString(x.length()),
                                "0x" + Long.toHexString(x.offset()), x.file());
                    }
                }
            }
        }
        return 0;
    }
}
