package io.vhostblk.image.qcow2;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Image locking interoperates with QEMU's: each side refuses what QEMU would refuse. */
class LockingTest {
    @TempDir
    Path dir;
    String img;

    @BeforeEach
    void image() {
        QemuTool.assumePresent();
        QemuTool.img(dir, "create", "-f", "qcow2", "base.qcow2", "1M");
        QemuTool.img(dir, "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "a.qcow2", "1M");
        img = dir.resolve("a.qcow2").toString();
    }

    @Test
    void qemuCannotWriteOrReadConsistentlyWhileWeServeReadWrite() {
        try (Qcow2Image q = Qcow2Image.open(img, false, Options.defaults())) {
            QemuTool.Result w = QemuTool.run(dir, "qemu-io", "-f", "qcow2", "-c", "write 0 512", "a.qcow2");
            assertTrue(w.err().contains("Failed to get") && w.err().contains("lock"), w.err());
            QemuTool.Result info = QemuTool.run(dir, "qemu-img", "info", "a.qcow2");
            assertNotEquals(0, info.exit(), info.out());
            assertTrue(info.err().contains("Failed to get shared \"write\" lock"), info.err());
            // -U (force share) is allowed, as with QEMU itself
            assertEquals(0, QemuTool.run(dir, "qemu-img", "info", "-U", "a.qcow2").exit());
            // the backing file is protected against writers too
            QemuTool.Result bw = QemuTool.run(dir, "qemu-io", "-f", "qcow2", "-c", "write 0 512", "base.qcow2");
            assertTrue(bw.err().contains("Failed to get"), bw.out() + bw.err());
        }
        // released on close
        assertEquals(0, QemuTool.run(dir, "qemu-io", "-f", "qcow2", "-c", "write 0 512", "a.qcow2").exit());
    }

    @Test
    void readOnlyOpenSharesReadingButNotWriting() {
        try (Qcow2Image q = Qcow2Image.open(img, true, Options.defaults())) {
            assertEquals(0, QemuTool.run(dir, "qemu-io", "-r", "-f", "qcow2", "-c", "read 0 512", "a.qcow2").exit());
            QemuTool.Result w = QemuTool.run(dir, "qemu-io", "-f", "qcow2", "-c", "write 0 512", "a.qcow2");
            assertTrue(w.err().contains("Failed to get \"write\" lock"), w.out() + w.err());
            // a second read-only open (our own) is fine
            try (Qcow2Image q2 = Qcow2Image.open(img, true, Options.defaults())) {
                assertEquals(q.size(), q2.size());
            }
        }
    }

    @Test
    void weRefuseAnImageQemuHasOpenReadWriteAndSayWho() throws Exception {
        Process qemu = new ProcessBuilder("qemu-io", "-f", "qcow2", img).redirectErrorStream(true).start();
        try {
            waitForLock(img);
            Qcow2Exception e = assertThrows(Qcow2Exception.class, () -> Qcow2Image.open(img, false, Options.defaults()));
            assertTrue(e.getMessage().contains("in use"), e.getMessage());
            assertTrue(e.getMessage().contains("pid " + qemu.pid()) && e.getMessage().contains("qemu-io"), e.getMessage());
            Qcow2Exception r = assertThrows(Qcow2Exception.class, () -> Qcow2Image.open(img, true, Options.defaults()));
            assertTrue(r.getMessage().contains("write"), r.getMessage());
        } finally {
            qemu.getOutputStream().close();
            if (!qemu.waitFor(10, TimeUnit.SECONDS)) {
                qemu.destroyForcibly();
            }
        }
        // our own second read-write open is refused as well
        try (Qcow2Image q = Qcow2Image.open(img, false, Options.defaults())) {
            Qcow2Exception e = assertThrows(Qcow2Exception.class, () -> Qcow2Image.open(img, false, Options.defaults()));
            assertTrue(e.getMessage().contains("in use"), e.getMessage());
        }
    }

    @Test
    void weRefuseAWritableBackingFileInUse() throws Exception {
        Process qemu = new ProcessBuilder("qemu-io", "-f", "qcow2", dir.resolve("base.qcow2").toString()).redirectErrorStream(true).start();
        try {
            waitForLock(dir.resolve("base.qcow2").toString());
            Qcow2Exception e = assertThrows(Qcow2Exception.class, () -> Qcow2Image.open(img, false, Options.defaults()));
            assertTrue(e.getMessage().contains("base.qcow2"), e.getMessage());
        } finally {
            qemu.getOutputStream().close();
            qemu.waitFor(10, TimeUnit.SECONDS);
        }
    }

    private static void waitForLock(String path) throws Exception {
        long ino = (long) Files.getAttribute(Path.of(path), "unix:ino");
        for (int i = 0; i < 200; i++) {
            String locks = Files.readString(Path.of("/proc/locks"));
            for (String line : locks.split("\n")) {
                if (line.contains(":" + ino + " 100 ") || line.contains(":" + ino + " 101 ")) {
                    return;
                }
            }
            Thread.sleep(25);
        }
        throw new AssertionError("qemu-io never locked " + path);
    }
}
