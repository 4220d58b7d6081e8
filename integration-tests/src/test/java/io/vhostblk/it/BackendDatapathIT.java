package io.vhostblk.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInfo;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The datapath of bin/vhostblk-backend seen from a real Linux guest: fio verification over a
 * matrix of queue counts, queue sizes, event_idx, I/O engines and cache modes, plus dd
 * readback, serial, discard and reboot. Runs only once backend/target/vhostblk-backend.jar
 * exists. {@code -Dvhostblk.it.backend=qsd} runs the same tests against qemu-storage-daemon
 * (backend-specific arguments are then ignored) to check the tests themselves.
 */
class BackendDatapathIT {
    static final long DISK_BYTES = 256L << 20;
    static final boolean QSD_MODE = "qsd".equals(System.getProperty("vhostblk.it.backend", "vhostblk"));
    static final String SERIAL = "vhostblk-test-1";

    /** One backend + device configuration. */
    record Cfg(int queues, int queueSize, boolean eventIdx, String engine, String cache, int workers, int smp) {
        List<String> backendArgs(String serial) {
            List<String> a = new ArrayList<>(List.of("--workers", Integer.toString(workers),
                    "--engine", engine, "--cache", cache));
            if (serial != null) {
                a.addAll(List.of("--serial", serial));
            }
            return a;
        }

        @Override
        public String toString() {
            return "q" + queues + " qs" + queueSize + " event_idx=" + (eventIdx ? "on" : "off") + " " + engine
                    + " cache=" + cache + " workers" + workers + " smp" + smp;
        }
    }

    /**
     * Pairwise-style cover instead of the full cross product: every queue count, queue size,
     * event_idx setting, engine and cache mode appears, in different combinations. The guest
     * needs at least as many vCPUs as queues for virtio-blk to use them all.
     */
    static Stream<Cfg> fioMatrix() {
        return Stream.of(
                new Cfg(1, 256, true, "io_uring", "none", 1, 2),
                new Cfg(2, 1024, false, "threads", "writeback", 2, 2),
                new Cfg(4, 1024, true, "threads", "none", 2, 4),
                new Cfg(4, 256, false, "io_uring", "writeback", 4, 4));
    }

    @BeforeAll
    static void requireBackendJar() {
        if (!QSD_MODE) {
            assumeTrue(java.nio.file.Files.isRegularFile(VhostblkBackend.jar()),
                    "backend not built (" + VhostblkBackend.jar() + " missing): skipping the datapath tests"
                            + " against bin/vhostblk-backend");
        }
    }

    private TestWorkspace ws;
    private BackendProcess backend;

    @BeforeEach
    void workspace(TestInfo info) {
        ws = TestWorkspace.create(info);
        HostFiles.createSparse(ws.image(), DISK_BYTES);
    }

    @AfterEach
    void cleanup() {
        if (backend != null) {
            backend.close();
        }
        ws.close();
    }

    private BackendProcess startBackend(Cfg c, String serial) {
        backend = QSD_MODE
                ? new QsdBackend(ws.socket(), ws.image(), c.queues(), ws.file("backend.log"))
                : new VhostblkBackend(ws.socket(), ws.image(), c.queues(), c.backendArgs(serial),
                        ws.file("backend.log"));
        backend.start();
        return backend;
    }

    private QemuGuest.Builder guest(Cfg c, String test) {
        return QemuGuest.builder().test(test).socket(ws.socket()).smp(c.smp()).numQueues(c.queues())
                .queueSize(c.queueSize()).eventIdx(c.eventIdx()).logFile(ws.file("guest.log")).watch(backend);
    }

    /** Guest result must be a success; on failure include the backend's log too. */
    private GuestResult ok(GuestResult r) {
        if (!r.succeeded()) {
            throw new AssertionError("guest test failed (DONE rc " + r.doneRc() + ", QEMU exit "
                    + r.qemuExitCode() + ")\n" + r.describe() + "\nbackend " + backend.log() + " (last lines):\n"
                    + backend.logTail(30));
        }
        return r;
    }

    private void assertBackendAliveThenStopsWithZero() {
        assertTrue(backend.isAlive(), "backend died during the test; log " + backend.log() + ":\n"
                + backend.logTail(30));
        int rc = backend.stop();
        assertEquals(0, rc, "backend exit code after SIGTERM; log " + backend.log() + ":\n" + backend.logTail(30));
    }

    @ParameterizedTest(name = "fio verify {0}")
    @MethodSource("fioMatrix")
    void fioVerify(Cfg c) {
        startBackend(c, null);
        GuestResult r = ok(guest(c, "fio").run());
        assertEquals("OK", r.get("verify"), r.describe());
        assertEquals(0, r.getLong("verify_errors"), r.describe());
        assertEquals(0, r.getLong("io_errors"), r.describe());
        assertEquals(Math.min(c.queues(), c.smp()), r.getLong("vda_queues"), "blk-mq hardware queues; " + r.describe());
        assertTrue(r.getLong("iops_read") > 0 && r.getLong("iops_write") > 0, r.describe());
        assertBackendAliveThenStopsWithZero();
        ws.deleteImage();
    }

    @Test
    void ddReadbackEqualsHostFile() {
        Cfg c = new Cfg(2, 256, true, "io_uring", "writeback", 2, 2);
        startBackend(c, null);
        GuestResult r = ok(guest(c, "dd").arg("mib", 16).arg("offset_mib", 5).run());
        String written = r.get("sha256_written");
        assertEquals(written, r.get("sha256_read"), "guest read back other data; " + r.describe());
        assertEquals(written, HostFiles.sha256(ws.image(), 5L << 20, 16L << 20),
                "host file bytes differ from what the guest wrote; " + r.describe());
        assertBackendAliveThenStopsWithZero();
        ws.deleteImage();
    }

    @Test
    void serialIsReported() {
        Cfg c = new Cfg(1, 256, false, "threads", "writeback", 1, 2);
        startBackend(c, SERIAL);
        GuestResult r = ok(guest(c, "serial").run());
        assertEquals(QSD_MODE ? "vhost_user_blk" : SERIAL, r.get("serial"), r.describe());
        assertBackendAliveThenStopsWithZero();
        ws.deleteImage();
    }

    @Test
    void discardPunchesHolesInHostFile() {
        Cfg c = new Cfg(2, 256, true, "threads", "none", 2, 2);
        startBackend(c, null);
        GuestResult r = ok(guest(c, "discard").arg("offset_mib", 32).arg("mib", 16).run());
        assertEquals(0, r.getLong("discard_rc"), r.describe());
        assertTrue(r.getLong("discard_max_bytes") > 0, "device advertises no discard; " + r.describe());
        long discarded = r.getLong("discard_bytes");
        long allocated = HostFiles.allocatedBytes(ws.image());
        // the guest wrote `discarded` bytes of random data, then discarded them; nothing else was written
        assertTrue(allocated < discarded / 2, "host file still has " + allocated + " bytes allocated after the guest"
                + " wrote and discarded " + discarded + " bytes; " + r.describe());
        assertBackendAliveThenStopsWithZero();
        ws.deleteImage();
    }

    @Test
    void rebootKeepsTheDiskWorking() {
        Cfg c = new Cfg(2, 256, true, "io_uring", "none", 2, 2);
        startBackend(c, null);
        GuestResult r = ok(guest(c, "reboot").noReboot(false).reconnect(true).arg("mib", 8).arg("offset_mib", 2).run());
        List<String> boots = r.entries().stream().filter(e -> e.getKey().equals("boot_count"))
                .map(java.util.Map.Entry::getValue).toList();
        assertEquals(List.of("1", "2"), boots, "expected a first boot and a second boot; " + r.describe());
        String written = r.get("sha256_written");
        assertEquals(written, r.get("sha256_read"), r.describe());
        assertEquals(written, HostFiles.sha256(ws.image(), 2L << 20, 8L << 20), r.describe());
        // the boot counter in the last sector was cleared again
        assertTrue(HostFiles.isAllZero(ws.image(), DISK_BYTES - 512, 512), "boot counter sector not cleared");
        assertBackendAliveThenStopsWithZero();
        ws.deleteImage();
    }
    @Test
    void fioVerifiesOnAQcow2OverlayOfABackingFile() throws Exception {
        assumeTrue(!QSD_MODE, "vhostblk-only: QSD's export here is raw");
        // base.raw holds data the guest must see through the overlay until it overwrites it.
        java.nio.file.Path base = ws.file("base.raw");
        java.nio.file.Path overlay = ws.file("overlay.qcow2");
        HostFiles.createSparse(base, DISK_BYTES);
        run("qemu-io", "-f", "raw", "-c", "write -P 0xab 0 16M", base.toString());
        run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "backing_file=" + base + ",backing_fmt=raw", overlay.toString(),
                Long.toString(DISK_BYTES));
        Cfg c = new Cfg(2, 256, true, "io_uring", "none", 2, 2);
        backend = new VhostblkBackend(ws.socket(), overlay, c.queues(),
                List.of("--format", "qcow2", "--workers", "2", "--cache", "none"), ws.file("backend.log"));
        backend.start();
        // fio works in [32 MiB, 96 MiB): the first 16 MiB keep the backing file's bytes.
        GuestResult r = ok(guest(c, "fio").arg("offset", "32M").arg("size", "64M").run());
        assertEquals("OK", r.get("verify"), r.describe());
        assertEquals(0, r.getLong("io_errors"), r.describe());
        assertBackendAliveThenStopsWithZero();
        String check = run("qemu-img", "check", overlay.toString());
        assertTrue(check.contains("No errors were found"), check);
        String io = run("qemu-io", "-f", "qcow2", "-r", "-c", "read -P 0xab 0 16M", overlay.toString());
        assertTrue(!io.contains("Pattern verification failed"), "backing data no longer visible through the overlay: " + io);
        assertTrue(HostFiles.allocatedBytes(base) >= (16L << 20), "the backing file was not written to");
    }

    private static String run(String... cmd) throws Exception {
        return HostCommand.ok(java.time.Duration.ofSeconds(120), cmd);
    }
}
