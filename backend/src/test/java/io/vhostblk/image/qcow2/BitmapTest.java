package io.vhostblk.image.qcow2;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Persistent dirty bitmaps, read back by QEMU itself (NBD export of the bitmap, qemu-img map). */
class BitmapTest {
    @TempDir
    Path dir;

    @BeforeEach
    void qemu() {
        QemuTool.assumePresent();
    }

    /** The granules QEMU sees dirty in bitmap {@code name}, as a boolean per granule. */
    boolean[] qemuDirty(String image, String name, long size, long gran) throws Exception {
        Path sock = dir.resolve("nbd.sock");
        java.nio.file.Files.deleteIfExists(sock);
        Process qsd = new ProcessBuilder("qemu-storage-daemon", "--blockdev", "driver=file,filename=" + image + ",node-name=f",
                "--blockdev", "driver=qcow2,file=f,node-name=n,read-only=on", "--nbd-server", "addr.type=unix,addr.path=" + sock,
                "--export", "type=nbd,id=e,node-name=n,bitmaps.0=" + name).redirectErrorStream(true).start();
        try {
            for (int i = 0; i < 200 && !java.nio.file.Files.exists(sock); i++) {
                Thread.sleep(20);
            }
            String map = QemuTool.img(dir, "map", "--output=json", "--image-opts",
                    "driver=nbd,server.type=unix,server.path=" + sock + ",export=n,x-dirty-bitmap=qemu:dirty-bitmap:" + name);
            boolean[] dirty = new boolean[(int) ((size + gran - 1) / gran)];
            Matcher m = Pattern.compile("\"start\": (\\d+), \"length\": (\\d+),.*?\"data\": (\\w+)").matcher(map);
            while (m.find()) {
                if (m.group(3).equals("false")) {
                    long s = Long.parseLong(m.group(1));
                    long l = Long.parseLong(m.group(2));
                    for (long g = s / gran; g < (s + l + gran - 1) / gran; g++) {
                        dirty[(int) g] = true;
                    }
                }
            }
            return dirty;
        } finally {
            qsd.destroy();
            qsd.waitFor(10, TimeUnit.SECONDS);
        }
    }

    @Test
    void qemuCreatedBitmapIsInUseWhileOpenAndRecordsOurWrites() throws Exception {
        long size = 8L << 20;
        long gran = 64 << 10;
        String img = dir.resolve("bm.qcow2").toString();
        QemuTool.img(dir, "create", "-f", "qcow2", img, Long.toString(size));
        QemuTool.io(dir, "qcow2", img, "write -P 1 0 4k");   // before the bitmap: not recorded
        QemuTool.img(dir, "bitmap", "--add", "-g", Long.toString(gran), img, "b0");
        QemuTool.io(dir, "qcow2", img, "write -P 2 3M 10k"); // recorded by QEMU
        boolean[] expected = qemuDirty(img, "b0", size, gran);
        Random r = new Random(3);
        try (Qcow2Image q = Qcow2Image.open(img, false, Options.defaults())) {
            String info = QemuTool.img(dir, "info", "-U", img);
            assertTrue(info.contains("in-use"), "marked in use while open:\n" + info);
            for (int i = 0; i < 20; i++) {
                long off = r.nextLong(size - 70_000) / 512 * 512;
                byte[] d = new byte[512 * (1 + r.nextInt(120))];
                assertEquals(0, Buffers.write(q, off, d, r, false));
                mark(expected, off, d.length, gran);
            }
            assertEquals(0, q.writeZeroes(5L << 20, 128 << 10, true));
            mark(expected, 5L << 20, 128 << 10, gran);
            assertEquals(0, q.discard(7L << 20, 64 << 10));
            mark(expected, 7L << 20, 64 << 10, gran);
            for (int g = 0; g < expected.length; g++) {
                assertEquals(expected[g], q.bitmaps.isDirty("b0", g * gran), "granule " + g + " in memory");
            }
        }
        String info = QemuTool.img(dir, "info", img);
        assertTrue(!info.contains("in-use") && info.contains("auto"), info);
        assertTrue(QemuTool.check(dir, img).clean() && QemuTool.check(dir, img).leaks() == 0, QemuTool.check(dir, img).json());
        boolean[] got = qemuDirty(img, "b0", size, gran);
        assertEquals(str(expected), str(got));
    }

    @Test
    void bitmapCreatedHereIsLoadedByQemu() throws Exception {
        long size = 4L << 20;
        long gran = 128 << 10;
        String img = dir.resolve("ours.qcow2").toString();
        QemuTool.img(dir, "create", "-f", "qcow2", "-o", "cluster_size=4k", img, Long.toString(size));
        boolean[] expected = new boolean[(int) (size / gran)];
        try (Qcow2Image q = Qcow2Image.open(img, false, Options.defaults())) {
            q.createBitmap("mine", gran);
            assertEquals(List.of("mine granularity=131072 flags=[in-use, auto]"), q.bitmapDescriptions());
            Random r = new Random(9);
            for (int i = 0; i < 6; i++) {
                long off = r.nextLong(size - 10_000) / 512 * 512;
                assertEquals(0, Buffers.write(q, off, new byte[8192], r, false));
                mark(expected, off, 8192, gran);
            }
        }
        QemuTool.Check c = QemuTool.check(dir, img);
        assertTrue(c.clean() && c.leaks() == 0, c.json());
        QemuTool.assertCheckAgrees(dir, "ours.qcow2");
        assertEquals(str(expected), str(qemuDirty(img, "mine", size, gran)));
        // reopened, it keeps recording; QEMU still agrees
        try (Qcow2Image q = Qcow2Image.open(img, false, Options.defaults())) {
            assertEquals(0, Buffers.write(q, 0, new byte[512], new Random(1), false));
            mark(expected, 0, 512, gran);
        }
        assertEquals(str(expected), str(qemuDirty(img, "mine", size, gran)));
        assertTrue(QemuTool.check(dir, img).clean());
    }

    static void mark(boolean[] b, long off, long len, long gran) {
        for (long g = off / gran; g <= (off + len - 1) / gran; g++) {
            b[(int) g] = true;
        }
    }

    static String str(boolean[] b) {
        StringBuilder s = new StringBuilder();
        for (boolean x : b) {
            s.append(x ? '1' : '.');
        }
        return s.toString();
    }

}
