package io.vhostblk.image.qcow2;

import io.vhostblk.image.CacheMode;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Images made by qemu-img/qemu-io with every layout option read through the library exactly as
 * qemu-img converts them to raw.
 */
class ReadCompatTest {
    static final long SIZE = (5L << 20) + 1536;

    @TempDir
    static Path dir;
    static byte[] src;

    @BeforeAll
    static void corpus() throws Exception {
        QemuTool.assumePresent();
        Random rnd = new Random(42);
        src = new byte[(int) SIZE];
        for (int i = 0; i < 40; i++) {
            int off = rnd.nextInt((int) SIZE - 200_000);
            int len = 1 + rnd.nextInt(150_000);
            byte[] chunk = new byte[len];
            if (i % 3 == 0) {
                // compressible text-like data
                for (int j = 0; j < len; j++) {
                    chunk[j] = (byte) ('a' + (j * 7 + i) % 26);
                }
            } else {
                rnd.nextBytes(chunk);
            }
            System.arraycopy(chunk, 0, src, off, len);
        }
        Files.write(dir.resolve("src.raw"), src);
    }

    /** Layout variants: name -> qemu-img convert options. */
    static Map<String, List<String>> variants() {
        Map<String, List<String>> m = new LinkedHashMap<>();
        m.put("v3-64k", List.of());
        m.put("v2", List.of("-o", "compat=0.10"));
        m.put("c512", List.of("-o", "cluster_size=512"));
        m.put("c2M", List.of("-o", "cluster_size=2M"));
        m.put("rc1", List.of("-o", "refcount_bits=1"));
        m.put("rc64", List.of("-o", "refcount_bits=64"));
        m.put("rc4-c4k", List.of("-o", "refcount_bits=4,cluster_size=4k"));
        m.put("extl2", List.of("-o", "extended_l2=on"));
        m.put("extl2-2M", List.of("-o", "extended_l2=on,cluster_size=2M"));
        m.put("zlib", List.of("-c"));
        m.put("zlib-c512", List.of("-c", "-o", "cluster_size=512"));
        m.put("zstd", List.of("-c", "-o", "compression_type=zstd"));
        m.put("zlib-v2", List.of("-c", "-o", "compat=0.10"));
        m.put("zlib-extl2", List.of("-c", "-o", "extended_l2=on"));
        m.put("datafile", List.of("-o", "data_file=datafile.data"));
        m.put("datafile-raw", List.of("-o", "data_file=datafile-raw.data,data_file_raw=on"));
        m.put("lazy", List.of("-o", "lazy_refcounts=on"));
        return m;
    }

    /** Edits after conversion, so every image has zero clusters, discards and partial writes. */
    static final String[] EDITS = {
            "write -P 0x5a 12345 3000", "write -z 1M 64k", "write -z -u 1536k 192k", "discard 2M 128k",
            "write -P 0x33 4096 512", "write -z 3000k 5000", "write -P 0x77 5119k 2k"};

    @TestFactory
    List<DynamicTest> layoutsReadAsQemuReadsThem() {
        List<DynamicTest> tests = new ArrayList<>();
        for (Map.Entry<String, List<String>> v : variants().entrySet()) {
            tests.add(DynamicTest.dynamicTest(v.getKey(), () -> {
                String name = v.getKey() + ".qcow2";
                List<String> cmd = new ArrayList<>(List.of("convert", "-f", "raw", "-O", "qcow2"));
                cmd.addAll(v.getValue());
                cmd.add("src.raw");
                cmd.add(name);
                QemuTool.img(dir, cmd.toArray(String[]::new));
                boolean compressed = v.getValue().contains("-c");
                // edits (compressed images get them too: COW of compressed clusters by QEMU)
                QemuTool.io(dir, "qcow2", name, compressed ? new String[]{"write -P 0x5a 12345 3000", "write -z 1M 64k"} : EDITS);
                assertReadsLikeQemu(name);
            }));
        }
        return tests;
    }

    static void assertReadsLikeQemu(String name) throws Exception {
        QemuTool.assertCheckAgrees(dir, name);
        byte[] expected = QemuTool.rawContents(dir, name);
        for (CacheMode mode : new CacheMode[]{CacheMode.WRITEBACK, CacheMode.NONE}) {
            try (Qcow2Image img = Qcow2Image.open(dir.resolve(name).toString(), true, Options.defaults().withCache(mode))) {
                assertEquals(expected.length, img.size());
                byte[] got = Buffers.readAll(img, new Random(7));
                assertArrayEquals(expected, got, name + " differs from qemu-img convert -O raw");
            }
        }
    }

    @Test
    void backingChainOfDepthThreeWithRelativePaths() throws Exception {
        Path d1 = Files.createDirectories(dir.resolve("chain/d1"));
        Path d2 = Files.createDirectories(dir.resolve("chain/d1/d2"));
        QemuTool.img(dir, "convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4k", "src.raw", "chain/base.qcow2");
        QemuTool.img(d1, "create", "-f", "qcow2", "-b", "../base.qcow2", "-F", "qcow2", "-o", "cluster_size=64k", "mid.qcow2");
        QemuTool.io(d1, "qcow2", "mid.qcow2", "write -P 0x11 100k 300k", "write -z 2M 64k", "discard 3M 64k");
        // top is larger than its backing file, and has extended L2 entries over a plain backing
        QemuTool.img(d2, "create", "-f", "qcow2", "-b", "../mid.qcow2", "-F", "qcow2", "-o", "extended_l2=on", "top.qcow2", "6M");
        QemuTool.io(d2, "qcow2", "top.qcow2", "write -P 0x22 150k 10k", "write -P 0x23 5M 700k", "write -z 200k 4k");
        // open by a path relative to the working directory of neither image
        assertReadsLikeQemu("chain/d1/d2/top.qcow2");
    }

    @Test
    void rawBackingFile() throws Exception {
        QemuTool.img(dir, "create", "-f", "qcow2", "-b", "src.raw", "-F", "raw", "over-raw.qcow2");
        QemuTool.io(dir, "qcow2", "over-raw.qcow2", "write -P 0x44 70000 5000", "write -z 1M 64k");
        assertReadsLikeQemu("over-raw.qcow2");
    }

    @Test
    void internalSnapshotsDoNotDisturbTheActiveLayer() throws Exception {
        QemuTool.img(dir, "convert", "-f", "raw", "-O", "qcow2", "src.raw", "snap.qcow2");
        QemuTool.img(dir, "snapshot", "-c", "s1", "snap.qcow2");
        QemuTool.io(dir, "qcow2", "snap.qcow2", "write -P 0x66 0 100k");
        assertReadsLikeQemu("snap.qcow2");
    }

    @Test
    void refusesWhatItCannotServe() throws Exception {
        Files.write(dir.resolve("notqcow.img"), new byte[4096]);
        Qcow2Exception e = assertThrows(Qcow2Exception.class,
                () -> Qcow2Image.open(dir.resolve("notqcow.img").toString(), true, Options.defaults()));
        assertTrue(e.getMessage().contains("not a qcow2"), e.getMessage());
        // An encrypted image: a plain one whose header says crypt_method = LUKS (2). Creating a real
        // LUKS image makes qemu-img time PBKDF on the CPU, which fails on a saturated host.
        QemuTool.img(dir, "create", "-f", "qcow2", "enc.qcow2", "1M");
        try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(dir.resolve("enc.qcow2"),
                java.nio.file.StandardOpenOption.WRITE)) {
            ch.write(java.nio.ByteBuffer.wrap(new byte[] {0, 0, 0, 2}), 32);
        }
        e = assertThrows(Qcow2Exception.class, () -> Qcow2Image.open(dir.resolve("enc.qcow2").toString(), true, Options.defaults()));
        assertTrue(e.getMessage().contains("encrypted"), e.getMessage());
    }
}
