package io.vhostblk.image.qcow2;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** lazy_refcounts: the image is dirty while written, and a crashed dirty image is repaired on open. */
class DirtyRepairTest {
    @TempDir
    Path dir;

    static long incompatible(Path p) throws Exception {
        return ByteBuffer.wrap(Files.readAllBytes(p)).getLong(72);
    }

    @Test
    void crashedLazyRefcountImageIsRepairedWhenOpenedReadWrite() throws Exception {
        QemuTool.assumePresent();
        Path p = dir.resolve("lazy.qcow2");
        QemuTool.img(dir, "create", "-f", "qcow2", "-o", "lazy_refcounts=on,cluster_size=4k", p.toString(), "4M");
        Options noLock = Options.defaults().withLock(false);
        byte[] ref = new byte[4 << 20];
        Random r = new Random(5);
        Qcow2Image crashed = Qcow2Image.open(p.toString(), false, noLock);
        for (int i = 0; i < 200; i++) {
            byte[] d = new byte[4096 * (1 + r.nextInt(3))];
            r.nextBytes(d);
            int off = r.nextInt((4 << 20) - d.length) / 512 * 512;
            assertEquals(0, Buffers.write(crashed, off, d, r, false));
            System.arraycopy(d, 0, ref, off, d.length);
            if (i % 50 == 49) {
                assertEquals(0, crashed.discard(r.nextInt(1 << 20) * 4L / 4096 * 4096, 64 << 10));
            }
        }
        // the discards above changed ref only where whole clusters went away: re-read the truth
        assertEquals(0, crashed.flush());
        byte[] flushed = Buffers.readAll(crashed, r);
        assertTrue((incompatible(p) & Qcow2Header.INCOMPAT_DIRTY) != 0, "dirty bit set while in use");
        // "crash": the object is abandoned without close; the dirty bit stays
        QemuTool.Check before = QemuTool.check(dir, p.toString());
        try (Qcow2Image repaired = Qcow2Image.open(p.toString(), false, noLock)) {
            assertArrayEquals(flushed, Buffers.readAll(repaired, r));
            assertEquals(0, (incompatible(p) & Qcow2Header.INCOMPAT_DIRTY), "clean after repair");
        }
        QemuTool.Check after = QemuTool.check(dir, p.toString());
        assertTrue(after.clean() && after.leaks() == 0, "after repair: " + after.json() + "\nbefore: " + before.json());
        assertEquals(0, incompatible(p) & Qcow2Header.INCOMPAT_DIRTY);
        assertArrayEquals(flushed, QemuTool.rawContents(dir, p.toString()));
    }

    @Test
    void leakedClustersAreRepairedByCheckRepair() throws Exception {
        QemuTool.assumePresent();
        Path p = dir.resolve("leaky.qcow2");
        QemuTool.img(dir, "create", "-f", "qcow2", "-o", "cluster_size=4k", p.toString(), "1M");
        QemuTool.io(dir, "qcow2", p.toString(), "write -P 1 0 64k", "write -P 2 256k 64k", "discard 0 64k");
        // leak: raise a free cluster's refcount (inside the file) with our own refcount code
        try (Qcow2Image img = Qcow2Image.open(p.toString(), false, Options.defaults())) {
            img.metaLock().lock();
            try {
                long c = 1;
                while (img.refcount(c) != 0) {
                    c++;
                }
                assertTrue(c < Files.size(p) / 4096);
                img.setRefcount(c, 1, -1, -1);
            } finally {
                img.metaLock().unlock();
            }
            img.flushMetadata();
        }
        assertEquals(1, QemuTool.check(dir, p.toString()).leaks());
        QemuTool.assertCheckAgrees(dir, "leaky.qcow2");
        try (Qcow2Image img = Qcow2Image.open(p.toString(), false, Options.defaults())) {
            assertEquals(1, Qcow2Check.repair(img));
        }
        QemuTool.Check after = QemuTool.check(dir, p.toString());
        assertEquals(0, after.leaks(), after.json());
        assertTrue(after.clean());
    }
}
