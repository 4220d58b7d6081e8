package io.vhostblk.image.qcow2;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** vhostblk image create|info|check|map against qemu-img. */
class ImageToolTest {
    @TempDir
    Path dir;

    record Run(int exit, String out, String err) {
    }

    Run tool(String... args) {
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        ByteArrayOutputStream e = new ByteArrayOutputStream();
        String[] full = args.clone();
        for (int i = 0; i < full.length; i++) {
            if (full[i].endsWith(".qcow2") && !full[i].startsWith("/") && !full[i].contains("=") && (i == 0 || !full[i - 1].equals("-b"))) {
                full[i] = dir.resolve(full[i]).toString();
            }
        }
        int rc = new ImageTool(new PrintStream(o, true, StandardCharsets.UTF_8), new PrintStream(e, true, StandardCharsets.UTF_8)).run(full);
        return new Run(rc, o.toString(StandardCharsets.UTF_8), e.toString(StandardCharsets.UTF_8));
    }

    @BeforeEach
    void qemu() {
        QemuTool.assumePresent();
    }

    /** The format-specific and size fields of qemu-img info --output=json, as "key=value" lines. */
    static List<String> infoFields(String json) {
        List<String> l = new ArrayList<>();
        Matcher m = Pattern.compile("\"(virtual-size|cluster-size|compat|compression-type|lazy-refcounts|refcount-bits|corrupt|"
                + "extended-l2|data-file|data-file-raw|backing-filename|backing-filename-format|dirty-flag|name|granularity)\": ([^,\\n]+)").matcher(json);
        while (m.find()) {
            l.add(m.group(1) + "=" + m.group(2).trim());
        }
        java.util.Collections.sort(l);
        return l;
    }

    static final String[][] CREATE_OPTS = {
            {},
            {"-o", "cluster_size=512"},
            {"-o", "cluster_size=2M"},
            {"-o", "compat=0.10"},
            {"-o", "refcount_bits=1"},
            {"-o", "refcount_bits=64,cluster_size=4k"},
            {"-o", "extended_l2=on,lazy_refcounts=on"},
            {"-o", "compression_type=zstd"},
            {"-o", "preallocation=metadata,cluster_size=4k"},
            {"-o", "preallocation=metadata,extended_l2=on"},
            {"-o", "data_file=DATA.data"},
            {"-o", "data_file=DATA.data,data_file_raw=on"}};

    @Test
    void createMakesWhatQemuImgMakes() throws Exception {
        int n = 0;
        for (String[] opts : CREATE_OPTS) {
            n++;
            String ours = "ours" + n + ".qcow2";
            String theirs = "qemu" + n + ".qcow2";
            List<String> a = new ArrayList<>(List.of("create", "-f", "qcow2"));
            for (String o : opts) {
                a.add(o.replace("DATA", "ours" + n));
            }
            a.add(ours);
            a.add("3M");
            Run r = tool(a.toArray(String[]::new));
            assertEquals(0, r.exit(), r.err());
            List<String> q = new ArrayList<>(List.of("create", "-f", "qcow2"));
            for (String o : opts) {
                q.add(o.replace("DATA", "qemu" + n));
            }
            q.add(theirs);
            q.add("3M");
            QemuTool.img(dir, q.toArray(String[]::new));
            String what = String.join(" ", opts);
            assertEquals(infoFields(QemuTool.img(dir, "info", "--output=json", theirs)).toString().replace("qemu" + n, "X"),
                    infoFields(QemuTool.img(dir, "info", "--output=json", ours)).toString().replace("ours" + n, "X"), what);
            QemuTool.Check cq = QemuTool.check(dir, theirs);
            QemuTool.Check co = QemuTool.check(dir, ours);
            assertTrue(co.clean() && co.leaks() == 0, what + ": " + co.json());
            assertEquals(cq.allocated(), co.allocated(), what);
            assertEquals(cq.total(), co.total(), what);
            // qemu writes into it; both read it the same
            QemuTool.io(dir, "qcow2", ours, "write -P 0x5c 1000k 300k", "write -z 2M 64k");
            try (Qcow2Image img = Qcow2Image.open(dir.resolve(ours).toString(), true, Options.defaults())) {
                assertArrayEquals(QemuTool.rawContents(dir, ours), Buffers.readAll(img, new java.util.Random(1)), what);
            }
            assertTrue(QemuTool.check(dir, ours).clean(), what);
        }
    }

    @Test
    void createWithBackingFileTakesItsSize() throws Exception {
        QemuTool.img(dir, "create", "-f", "qcow2", "base.qcow2", "5M");
        Run r = tool("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2");
        assertEquals(0, r.exit(), r.err());
        String info = QemuTool.img(dir, "info", "--output=json", "top.qcow2");
        assertTrue(info.contains("\"virtual-size\": 5242880"), info);
        assertTrue(info.contains("\"backing-filename\": \"base.qcow2\""), info);
        assertTrue(info.contains("\"backing-filename-format\": \"qcow2\""), info);
        Run bad = tool("create", "-f", "qcow2", "-b", "base.qcow2", "nofmt.qcow2");
        assertEquals(1, bad.exit());
        assertTrue(bad.err().contains("format"), bad.err());
    }

    @Test
    void infoAgreesWithQemuImg() throws Exception {
        QemuTool.img(dir, "create", "-f", "qcow2", "-o", "cluster_size=4k", "b.qcow2", "2M");
        QemuTool.img(dir, "create", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", "-o", "extended_l2=on,compression_type=zstd", "t.qcow2");
        for (String img : new String[]{"b.qcow2", "t.qcow2"}) {
            Run r = tool("info", "--output=json", img);
            assertEquals(0, r.exit(), r.err());
            assertEquals(infoFields(QemuTool.img(dir, "info", "--output=json", img)), infoFields(r.out()));
            Run h = tool("info", img);
            assertTrue(h.out().contains("virtual size: 2 MiB (2097152 bytes)"), h.out());
        }
    }

    @Test
    void checkReportsAndRepairsLikeQemuImg() throws Exception {
        QemuTool.img(dir, "create", "-f", "qcow2", "-o", "cluster_size=4k", "c.qcow2", "1M");
        QemuTool.io(dir, "qcow2", "c.qcow2", "write -P 1 0 64k", "write -P 2 256k 64k", "discard 0 64k");
        Run clean = tool("check", "c.qcow2");
        assertEquals(0, clean.exit(), clean.out() + clean.err());
        assertTrue(clean.out().contains("No errors were found on the image."), clean.out());
        String q = QemuTool.img(dir, "check", "c.qcow2");
        assertEquals(q.substring(q.indexOf("No errors")), clean.out().substring(clean.out().indexOf("No errors")));
        try (Qcow2Image img = Qcow2Image.open(dir.resolve("c.qcow2").toString(), false, Options.defaults())) {
            img.metaLock().lock();
            try {
                long c = 1;
                while (img.refcount(c) != 0) {
                    c++;
                }
                img.setRefcount(c, 1, -1, -1);
            } finally {
                img.metaLock().unlock();
            }
            img.flushMetadata();
        }
        Run leaky = tool("check", "--output=json", "c.qcow2");
        assertEquals(3, leaky.exit());
        QemuTool.Result qj = QemuTool.run(dir, "qemu-img", "check", "--output=json", "c.qcow2");
        assertEquals(qj.exit(), leaky.exit());
        for (String k : new String[]{"leaks", "image-end-offset", "total-clusters", "allocated-clusters", "fragmented-clusters"}) {
            assertEquals(QemuTool.num(qj.out(), k), QemuTool.num(leaky.out(), k), k);
        }
        Run fixed = tool("check", "-r", "leaks", "c.qcow2");
        assertEquals(0, fixed.exit(), fixed.out());
        assertTrue(fixed.out().contains("1 leaked clusters"), fixed.out());
        assertEquals(0, QemuTool.run(dir, "qemu-img", "check", "c.qcow2").exit());
    }

    record Ext(long start, long length, int depth, boolean present, boolean zero, boolean data, long offset) {
    }

    static List<Ext> parseMap(String json) {
        List<Ext> l = new ArrayList<>();
        Matcher m = Pattern.compile("\"start\": (\\d+), \"length\": (\\d+), \"depth\": (\\d+), \"present\": (\\w+), \"zero\": (\\w+), \"data\": (\\w+)(, \"offset\": (\\d+))?").matcher(json);
        while (m.find()) {
            Ext x = new Ext(Long.parseLong(m.group(1)), Long.parseLong(m.group(2)), Integer.parseInt(m.group(3)),
                    Boolean.parseBoolean(m.group(4)), Boolean.parseBoolean(m.group(5)), Boolean.parseBoolean(m.group(6)),
                    m.group(8) == null ? -1 : Long.parseLong(m.group(8)));
            if (!l.isEmpty()) {
                Ext p = l.getLast();
                if (p.depth() == x.depth() && p.present() == x.present() && p.zero() == x.zero() && p.data() == x.data()
                        && ((p.offset() < 0 && x.offset() < 0) || (p.offset() >= 0 && p.offset() + p.length() == x.offset()))) {
                    l.set(l.size() - 1, new Ext(p.start(), p.length() + x.length(), p.depth(), p.present(), p.zero(), p.data(), p.offset()));
                    continue;
                }
            }
            l.add(x);
        }
        return l;
    }

    @Test
    void mapAgreesWithQemuImgMap() throws Exception {
        QemuTool.img(dir, "create", "-f", "qcow2", "-o", "cluster_size=4k", "m0.qcow2", "256k");
        QemuTool.io(dir, "qcow2", "m0.qcow2", "write -P 1 0 8k", "write -z 16k 4k", "write -P 2 100k 20k");
        QemuTool.img(dir, "create", "-f", "qcow2", "-b", "m0.qcow2", "-F", "qcow2", "-o", "cluster_size=4k", "m1.qcow2");
        QemuTool.io(dir, "qcow2", "m1.qcow2", "write -P 3 4k 8k", "write -z 32k 4k", "write -z -u 100k 4k");
        QemuTool.img(dir, "create", "-f", "qcow2", "-b", "m1.qcow2", "-F", "qcow2", "-o", "extended_l2=on,cluster_size=64k", "m2.qcow2");
        QemuTool.io(dir, "qcow2", "m2.qcow2", "write -P 4 2k 2k", "write -z 8k 2k");
        for (String img : new String[]{"m0.qcow2", "m1.qcow2", "m2.qcow2"}) {
            Run r = tool("map", "--output=json", img);
            assertEquals(0, r.exit(), r.err());
            assertEquals(parseMap(QemuTool.img(dir, "map", "--output=json", img)), parseMap(r.out()), img + "\n" + r.out());
        }
        Run h = tool("map", "m1.qcow2");
        assertTrue(h.out().startsWith("Offset"), h.out());
    }
}
