package io.vhostblk.it;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInfo;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Backend restarts under a running guest (issue 6): QEMU reconnects to the same socket
 * ({@code reconnect=1}), hands the new backend the inflight region it kept, and the new backend
 * resubmits what the old one had taken but not completed. fio's crc32c verification and the
 * guest's kernel log must show nothing.
 */
class BackendRestartIT {
    static final long DISK_BYTES = 256L << 20;

    private TestWorkspace ws;
    private final List<VhostblkBackend> backends = new ArrayList<>();

    @BeforeAll
    static void requireBackendJar() {
        assumeTrue(java.nio.file.Files.isRegularFile(VhostblkBackend.jar()), "backend not built: " + VhostblkBackend.jar());
    }

    @BeforeEach
    void workspace(TestInfo info) {
        ws = TestWorkspace.create(info);
        HostFiles.createSparse(ws.image(), DISK_BYTES);
    }

    @AfterEach
    void cleanup() {
        backends.forEach(VhostblkBackend::close);
        ws.close();
    }

    private VhostblkBackend startBackend() {
        VhostblkBackend b = new VhostblkBackend(ws.socket(), ws.image(), 2, List.of("--workers", "2"),
                ws.file("backend-" + backends.size() + ".log"));
        backends.add(b);
        b.start();
        return b;
    }

    /** Runs fio for {@code seconds} in the guest while {@code restart} is applied three times. */
    private GuestResult fioWhileRestarting(int seconds, boolean kill) throws Exception {
        VhostblkBackend current = startBackend();
        CompletableFuture<GuestResult> guest = CompletableFuture.supplyAsync(() -> QemuGuest.builder().test("fio")
                .arg("runtime", seconds).socket(ws.socket()).smp(2).numQueues(2).queueSize(256).eventIdx(true)
                .reconnect(true).logFile(ws.file("guest.log")).run());
        for (int i = 0; i < 3; i++) {
            Thread.sleep(TimeUnit.SECONDS.toMillis(seconds / 4));
            assertTrue(current.isAlive(), "backend died on its own; " + current.logTail(20));
            if (kill) {
                ProcessHandle.of(current.pid()).ifPresent(ProcessHandle::destroyForcibly);
                for (int w = 0; w < 100 && current.isAlive(); w++) {
                    Thread.sleep(50);
                }
            } else {
                assertEquals(0, current.stop(Duration.ofSeconds(30)), "graceful stop exits 0; " + current.logTail(20));
            }
            current = startBackend();
        }
        GuestResult r = guest.get(5, TimeUnit.MINUTES);
        assertTrue(r.succeeded(), "guest failed across backend restarts\n" + r.describe() + "\nlast backend log:\n"
                + current.logTail(30));
        assertEquals("OK", r.get("verify"), r.describe());
        assertEquals(0, r.getLong("verify_errors"), r.describe());
        assertEquals(0, r.getLong("io_errors"), "guest kernel logged I/O errors; " + r.describe());
        assertTrue(current.isAlive());
        assertEquals(0, current.stop(Duration.ofSeconds(30)));
        return r;
    }

    @Test
    void sigkillThreeTimesDuringFioLosesNothing() throws Exception {
        fioWhileRestarting(40, true);
    }

    @Test
    void gracefulRestartThreeTimesDuringFio() throws Exception {
        fioWhileRestarting(32, false);
    }
}
