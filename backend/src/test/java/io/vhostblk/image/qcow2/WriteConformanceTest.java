package io.vhostblk.image.qcow2;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The same random operation sequences against a qcow2 image (through the library) and a plain
 * byte array; afterwards qemu-img must see identical contents and a clean image.
 */
class WriteConformanceTest {
    @TempDir
    static Path dir;

    @BeforeAll
    static void base() throws Exception {
        QemuTool.assumePresent();
        Random r = new Random(1);
        byte[] b = new byte[6 << 20];
        for (int i = 0; i < b.length; i += 4096) {
            if (r.nextInt(3) > 0) {
                for (int j = 0; j < 4096; j++) {
                    b[i + j] = (byte) (i / 4096 + j);
                }
            }
        }
        Files.write(dir.resolve("base.raw"), b);
        QemuTool.img(dir, "convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4k", "base.raw", "base.qcow2");
        QemuTool.img(dir, "convert", "-f", "raw", "-O", "qcow2", "-o", "compat=0.10", "base.raw", "base-v2.qcow2");
    }

    record Variant(String name, long size, List<String> createOpts, String backing, String backingFmt, boolean compressFill,
                   Options opts) {
    }

    static Options small() {
        return Options.defaults().withCacheSizes(1, 1);
    }

    static List<Variant> variants() {
        long sz = (4L << 20) + 3 * 512;
        Options d = Options.defaults();
        return List.of(
                new Variant("v3-64k", sz, List.of(), null, null, false, d),
                new Variant("v2", sz, List.of("-o", "compat=0.10"), null, null, false, d),
                new Variant("c512-rc64-tablegrowth", sz, List.of("-o", "cluster_size=512,refcount_bits=64"), null, null, false, d),
                new Variant("c2M", 6L << 20, List.of("-o", "cluster_size=2M"), null, null, false, d),
                new Variant("rc1", sz, List.of("-o", "refcount_bits=1"), null, null, false, d),
                new Variant("rc64-c4k-tinycache", sz, List.of("-o", "refcount_bits=64,cluster_size=4k"), null, null, false, small()),
                new Variant("extl2", sz, List.of("-o", "extended_l2=on"), null, null, false, d),
                new Variant("extl2-backing", 6L << 20, List.of("-o", "extended_l2=on,cluster_size=32k"), "base.qcow2", "qcow2", false, d),
                new Variant("v3-backing", 5L << 20, List.of(), "base.qcow2", "qcow2", false, small()),
                new Variant("v2-backing", 6L << 20, List.of("-o", "compat=0.10"), "base-v2.qcow2", "qcow2", false, d),
                new Variant("raw-backing", 6L << 20, List.of("-o", "cluster_size=16k"), "base.raw", "raw", false, d),
                new Variant("datafile", sz, List.of("-o", "data_file=df.data"), null, null, false, d),
                new Variant("compressed-zlib", 6L << 20, List.of("-c"), null, null, true, d),
                new Variant("compressed-zstd-extl2", 6L << 20, List.of("-c", "-o", "compression_type=zstd,extended_l2=on"), null, null, true, d),
                new Variant("lazy-refcounts", sz, List.of("-o", "lazy_refcounts=on"), null, null, false, d),
                // internal snapshot: every L2 table and data cluster shared (refcount 2, COPIED clear)
                new Variant("snapshot-shared", 6L << 20, List.of("-o", "cluster_size=16k"), null, null, true, d),
                new Variant("snapshot-shared-extl2", 6L << 20, List.of("-o", "extended_l2=on"), null, null, true, small()));
    }

    static Path create(Variant v) throws Exception {
        String name = v.name() + ".qcow2";
        Files.deleteIfExists(dir.resolve(name));
        if (v.compressFill()) {
            List<String> c = new ArrayList<>(List.of("convert", "-f", "raw", "-O", "qcow2"));
            c.addAll(v.createOpts());
            c.add("base.raw");
            c.add(name);
            QemuTool.img(dir, c.toArray(String[]::new));
            if (v.name().startsWith("snapshot")) {
                QemuTool.img(dir, "snapshot", "-c", "s1", name);
            }
        } else {
            List<String> c = new ArrayList<>(List.of("create", "-f", "qcow2"));
            c.addAll(v.createOpts());
            if (v.backing() != null) {
                c.addAll(List.of("-b", v.backing(), "-F", v.backingFmt()));
            }
            c.add(name);
            c.add(Long.toString(v.size()));
            QemuTool.img(dir, c.toArray(String[]::new));
        }
        return dir.resolve(name);
    }

    @TestFactory
    List<DynamicTest> randomOperationSequences() {
        List<DynamicTest> t = new ArrayList<>();
        for (Variant v : variants()) {
            t.add(DynamicTest.dynamicTest(v.name(), () -> run(v, 250, v.name().hashCode())));
        }
        return t;
    }

    static void run(Variant v, int ops, long seed) throws Exception {
        Path image = create(v);
        byte[] ref = QemuTool.rawContents(dir, image.getFileName().toString());
        byte[] backingRef = v.backing() == null ? null : Arrays.copyOf(QemuTool.rawContents(dir, v.backing()), ref.length);
        boolean v2 = v.createOpts().stream().anyMatch(s -> s.contains("compat=0.10"));
        Random rnd = new Random(seed);
        Qcow2Image img = Qcow2Image.open(image.toString(), false, v.opts());
        int cs = img.clusterSize();
        try {
            for (int op = 0; op < ops; op++) {
                int kind = rnd.nextInt(100);
                long size = ref.length;
                long off = rnd.nextInt(4) == 0 ? rnd.nextLong(size) : (rnd.nextLong(size) / 512) * 512;
                if (rnd.nextInt(4) == 0) {
                    off = (off / cs) * cs;
                }
                long maxLen = Math.min(size - off, rnd.nextInt(5) == 0 ? 3L * cs + 70_000 : Math.max(cs, 8192));
                int len = (int) Math.max(1, rnd.nextLong(maxLen) + 1);
                if (rnd.nextBoolean() && len > 512) {
                    len = len / 512 * 512;
                }
                if (kind < 50) {
                    byte[] d = new byte[len];
                    rnd.nextBytes(d);
                    assertEquals(0, Buffers.write(img, off, d, rnd, rnd.nextInt(20) == 0), "write");
                    System.arraycopy(d, 0, ref, (int) off, len);
                } else if (kind < 62) {
                    assertEquals(0, img.writeZeroes(off, len, rnd.nextBoolean()), "write zeroes");
                    Arrays.fill(ref, (int) off, (int) (off + len), (byte) 0);
                } else if (kind < 72) {
                    assertEquals(0, img.discard(off, len), "discard");
                    long first = (off + cs - 1) / cs;
                    long end = (off + len) / cs;
                    if (off + len == size) {
                        end = (size + cs - 1) / cs;
                    }
                    for (long g = first; g < end; g++) {
                        int a = (int) (g * cs);
                        int b = (int) Math.min(size, a + (long) cs);
                        if (v2 && backingRef != null) {
                            System.arraycopy(backingRef, a, ref, a, b - a);
                        } else {
                            Arrays.fill(ref, a, b, (byte) 0);
                        }
                    }
                } else if (kind < 77) {
                    assertEquals(0, img.flush(), "flush");
                } else if (kind < 79) {
                    img.close();
                    img = Qcow2Image.open(image.toString(), false, v.opts());
                } else {
                    byte[] got = Buffers.read(img, off, len);
                    assertArrayEquals(Arrays.copyOfRange(ref, (int) off, (int) off + len), got,
                            "read at " + off + "+" + len + " after op " + op);
                }
            }
            assertArrayEquals(ref, Buffers.readAll(img, rnd), "whole image through the library");
        } finally {
            img.close();
        }
        Path refFile = dir.resolve(v.name() + ".ref.raw");
        Files.write(refFile, ref);
        QemuTool.Result cmp = QemuTool.run(dir, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", refFile.toString(), image.toString());
        assertEquals(0, cmp.exit(), "qemu-img compare: " + cmp.out() + cmp.err());
        QemuTool.Check chk = QemuTool.check(dir, image.toString());
        assertTrue(chk.clean(), "qemu-img check: " + chk.json());
        assertEquals(0, chk.leaks(), "leaks after a clean close: " + chk.json());
        assertEquals(0, chk.exit(), chk.json());
        QemuTool.assertCheckAgrees(dir, image.getFileName().toString());
        if (v.name().startsWith("snapshot")) {
            // the snapshot still holds the original contents
            QemuTool.img(dir, "snapshot", "-a", "s1", image.toString());
            assertArrayEquals(Arrays.copyOf(QemuTool.rawContents(dir, "base.raw"), ref.length),
                    QemuTool.rawContents(dir, image.getFileName().toString()), "snapshot s1 after our writes");
        }
    }

    /**
     * Several threads write interleaved sectors of the same clusters (every allocation races
     * with others on the same cluster) while readers read; the result must be exact.
     */
    @Test
    void concurrentAllocatingWritesToSharedClusters() throws Exception {
        for (String opt : new String[]{"cluster_size=64k", "extended_l2=on"}) {
            Path image = dir.resolve("conc.qcow2");
            Files.deleteIfExists(image);
            QemuTool.img(dir, "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "-o", opt, "conc.qcow2", "4M");
            byte[] ref = Arrays.copyOf(QemuTool.rawContents(dir, "base.qcow2"), 4 << 20);
            int threads = 4;
            int sector = 512;
            ExecutorService ex = Executors.newFixedThreadPool(threads + 1);
            try (Qcow2Image img = Qcow2Image.open(image.toString(), false, Options.defaults().withCacheSizes(3 << 16, 2 << 16))) {
                List<Future<?>> fs = new ArrayList<>();
                for (int t = 0; t < threads; t++) {
                    final int me = t;
                    fs.add(ex.submit(() -> {
                        Random r = new Random(me);
                        for (int i = 0; i < 1500; i++) {
                            int s = r.nextInt((4 << 20) / sector / threads) * threads + me;
                            byte[] d = new byte[sector];
                            Arrays.fill(d, (byte) (me * 50 + i));
                            assertEquals(0, Buffers.write(img, (long) s * sector, d, r, false));
                            synchronized (ref) {
                                System.arraycopy(d, 0, ref, s * sector, sector);
                            }
                            if (i % 300 == 0) {
                                assertEquals(0, img.flush());
                            }
                        }
                        return null;
                    }));
                }
                fs.add(ex.submit(() -> {
                    Random r = new Random(99);
                    for (int i = 0; i < 300; i++) {
                        Buffers.read(img, r.nextInt((4 << 20) - 65536), 65536);
                    }
                    return null;
                }));
                for (Future<?> f : fs) {
                    f.get();
                }
                assertArrayEquals(ref, Buffers.readAll(img, new Random(3)));
            } finally {
                ex.shutdownNow();
            }
            Path refFile = dir.resolve("conc.ref.raw");
            Files.write(refFile, ref);
            QemuTool.Result cmp = QemuTool.run(dir, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", refFile.toString(), image.toString());
            assertEquals(0, cmp.exit(), opt + ": qemu-img compare: " + cmp.out() + cmp.err());
            QemuTool.Check chk = QemuTool.check(dir, image.toString());
            assertTrue(chk.clean() && chk.leaks() == 0, opt + ": " + chk.json());
        }
    }
}
