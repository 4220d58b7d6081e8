package io.vhostblk.it;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInfo;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The backend serving a block device (a loop device over a file, the same code path as an LVM
 * or device-mapper node): capacity comes from BLKGETSIZE64, the guest's fio verification passes
 * with O_DIRECT, and a guest discard reaches the device as BLKDISCARD (the loop driver punches
 * the hole into its backing file, which we can observe).
 */
class BlockDeviceIT {
    static final long DEVICE_BYTES = 128L << 20;

    private TestWorkspace ws;
    private String loop;
    private BackendProcess backend;

    @BeforeAll
    static void requireBackendAndLoopSupport() {
        assumeTrue(Files.isRegularFile(VhostblkBackend.jar()), "backend not built: " + VhostblkBackend.jar() + " missing");
        assumeTrue(Files.exists(Path.of("/dev/loop-control")) && "root".equals(System.getProperty("user.name")),
                "block-device tests need root and /dev/loop-control to create a loop device");
    }

    @BeforeEach
    void setUp(TestInfo info) throws Exception {
        ws = TestWorkspace.create(info);
        HostFiles.createSparse(ws.image(), DEVICE_BYTES);
        loop = run("losetup", "--find", "--show", ws.image().toString()).strip();
        assertTrue(loop.startsWith("/dev/loop"), "losetup answered '" + loop + "'");
    }

    @AfterEach
    void tearDown() throws Exception {
        if (backend != null) {
            backend.close();
        }
        if (loop != null) {
            run("losetup", "-d", loop);
        }
        ws.close();
    }

    private static String run(String... cmd) throws IOException, InterruptedException {
        return HostCommand.ok(java.time.Duration.ofSeconds(30), cmd);
    }

    private void start(List<String> args) {
        backend = new VhostblkBackend(ws.socket(), Path.of(loop), 2, args, ws.file("backend.log"));
        backend.start();
    }

    private QemuGuest.Builder guest(String test) {
        return QemuGuest.builder().test(test).socket(ws.socket()).smp(2).numQueues(2).queueSize(256).eventIdx(true)
                .logFile(ws.file("guest.log")).watch(backend);
    }

    private GuestResult ok(GuestResult r) {
        assertTrue(r.succeeded(), "guest test failed\n" + r.describe() + "\nbackend log:\n" + backend.logTail(30));
        return r;
    }

    @Test
    void fioVerifiesOnABlockDeviceWithODirect() {
        start(List.of("--workers", "2", "--engine", "io_uring", "--cache", "none"));
        GuestResult r = ok(guest("fio").arg("size", "32M").arg("runtime", 5).run());
        assertEquals("OK", r.get("verify"), r.describe());
        assertEquals(0, r.getLong("io_errors"), r.describe());
        assertEquals(DEVICE_BYTES / 512, r.getLong("vda_size_sectors"), "capacity from BLKGETSIZE64; " + r.describe());
        assertTrue(backend.isAlive());
        assertEquals(0, backend.stop());
    }

    @Test
    void discardReachesTheDevice() {
        start(List.of("--engine", "threads", "--cache", "none"));
        GuestResult r = ok(guest("discard").arg("offset_mib", 32).arg("mib", 16).run());
        assertEquals(0, r.getLong("discard_rc"), r.describe());
        long allocated = HostFiles.allocatedBytes(ws.image());
        assertTrue(allocated < r.getLong("discard_bytes") / 2,
                "loop backing file still has " + allocated + " bytes allocated after the discard; " + r.describe());
        assertEquals(0, backend.stop());
    }
}
