package io.vhostblk.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.StandardOpenOption;
import java.util.Random;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInfo;

/**
 * Rig sanity: the guest, QEMU and the harness against QEMU's own qemu-storage-daemon. If
 * these fail, the rig is broken, not the vhostblk backend.
 */
class GuestRigTest {
    static final long DISK_BYTES = 256L << 20;
    static final int QUEUES = 2;

    private TestWorkspace ws;
    private QsdBackend qsd;

    @BeforeEach
    void startQsd(TestInfo info) {
        ws = TestWorkspace.create(info);
        HostFiles.createSparse(ws.image(), DISK_BYTES);
        qsd = new QsdBackend(ws.socket(), ws.image(), QUEUES, ws.file("qsd.log"));
        qsd.start();
    }

    @AfterEach
    void stopQsd() {
        if (qsd != null) {
            qsd.close();
        }
        if (ws != null) {
            ws.close();
        }
    }

    private QemuGuest.Builder guest(String test) {
        return QemuGuest.builder().test(test).socket(ws.socket()).numQueues(QUEUES).logFile(ws.file("guest.log")).watch(qsd);
    }

    private void assertQsdStopsCleanly() {
        assertTrue(qsd.isAlive(), "qemu-storage-daemon died; " + qsd.logTail(20));
        assertEquals(0, qsd.stop(), "qemu-storage-daemon exit code after SIGTERM; " + qsd.logTail(20));
    }

    @Test
    void fioVerifyPasses() {
        GuestResult r = guest("fio").run().assertSuccess();
        assertEquals("OK", r.get("verify"), r.describe());
        assertEquals(0, r.getLong("verify_errors"), r.describe());
        assertEquals(0, r.getLong("errors"), r.describe());
        assertEquals(0, r.getLong("io_errors"), r.describe());
        assertEquals(QUEUES, r.getLong("vda_queues"), r.describe());
        assertTrue(r.getLong("iops_read") > 0, r.describe());
        assertTrue(r.getLong("iops_write") > 0, r.describe());
        assertQsdStopsCleanly();
        ws.deleteImage();
    }

    @Test
    void ddReadbackMatchesHostFile() {
        GuestResult r = guest("dd").arg("mib", 8).arg("offset_mib", 3).run().assertSuccess();
        String written = r.get("sha256_written");
        assertEquals(written, r.get("sha256_read"), r.describe());
        assertEquals(3L << 20, r.getLong("dd_offset_bytes"));
        assertEquals(written, HostFiles.sha256(ws.image(), 3L << 20, 8L << 20),
                "host file bytes differ from what the guest wrote; " + r.describe());
        assertQsdStopsCleanly();
        ws.deleteImage();
    }

    /**
     * The oracle itself: while the guest runs fio, the host keeps overwriting random 64 KiB
     * chunks of the fio region with garbage. fio must report verification failures.
     */
    @Test
    void fioVerifyDetectsHostSideCorruption() throws Exception {
        AtomicBoolean stop = new AtomicBoolean();
        AtomicInteger corruptions = new AtomicInteger();
        Thread corrupter = Thread.ofPlatform().name("corrupter").start(() -> {
            Random rnd = new Random(42);
            byte[] junk = new byte[64 << 10];
            try (FileChannel ch = FileChannel.open(ws.image(), StandardOpenOption.WRITE)) {
                while (!stop.get()) {
                    rnd.nextBytes(junk);
                    long off = (long) rnd.nextInt(1024) * junk.length; // inside the 64 MiB fio region
                    ch.write(ByteBuffer.wrap(junk), off);
                    ch.force(false);
                    corruptions.incrementAndGet();
                    Thread.sleep(100);
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        GuestResult r;
        try {
            r = guest("fio").arg("runtime", 4).run();
        } finally {
            stop.set(true);
            corrupter.join();
        }
        assertTrue(corruptions.get() > 10, "corrupter did not run");
        assertEquals(1, r.doneCount(), r.describe());
        assertNotEquals(0, r.doneRc().getAsInt(), "fio did not notice corrupted data; " + r.describe());
        assertEquals("FAILED", r.get("verify"), r.describe());
        assertTrue(r.getLong("verify_errors") > 0, r.describe());
        assertQsdStopsCleanly();
        ws.deleteImage();
    }
}
