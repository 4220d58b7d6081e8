package io.vhostblk.plugin.daemon;

import com.fasterxml.jackson.databind.JsonNode;
import io.vhostblk.plugin.config.PluginConfig;
import io.vhostblk.plugin.xml.DiskSpec;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Properties;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Backend supervision with a fake backend (a single-file Java program): no libvirt, no QEMU. */
class SupervisorTest {
    Path dir;
    Supervisor sup;
    PluginConfig cfg;
    final DomainRef dom = new DomainRef("unit", "0b5b2c4a-51f1-4bd2-8c6e-3d2a9f7e1c42");

    @BeforeEach
    void setUp() throws IOException {
        dir = Files.createTempDirectory(Path.of("/tmp"), "vbsup-");
        Path launcher = dir.resolve("fake-backend");
        Path src = Path.of("src/test/resources/fake/FakeBackend.java").toAbsolutePath();
        Files.writeString(launcher, "#!/bin/sh\nexec \"" + System.getProperty("java.home") + "/bin/java\" -Xshare:auto "
                + "-XX:TieredStopAtLevel=1 \"" + src + "\" \"$@\"\n");
        Files.setPosixFilePermissions(launcher, PosixFilePermissions.fromString("rwxr-xr-x"));
        Properties p = new Properties();
        p.setProperty("run.dir", dir.resolve("run").toString());
        p.setProperty("log.dir", dir.resolve("log").toString());
        p.setProperty("backend.launcher", launcher.toString());
        p.setProperty("socket.group", "");
        p.setProperty("supervisor.backoff-max-s", "2");
        p.setProperty("backend.stop-timeout-s", "5");
        cfg = PluginConfig.from(dir.resolve("none.conf"), p);
        sup = new Supervisor(cfg);
    }

    @AfterEach
    void tearDown() throws IOException {
        sup.release(dom, "test end");
        sup.close();
        for (ManagedBackend b : sup.all()) {
            if (b.pid() > 0) {
                ProcessHandle.of(b.pid()).ifPresent(ProcessHandle::destroyForcibly);
            }
        }
        try (var s = Files.walk(dir)) {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
        }
    }

    DiskSpec spec(String target, String image) {
        return new DiskSpec(target, cfg.socketDir().resolve("unit-" + target + ".sock").toString(), dir.resolve(image).toString(),
                "file", "raw", false, null, null, null, 1, null, null);
    }

    static void waitFor(String what, long ms, java.util.function.BooleanSupplier c) throws InterruptedException {
        long end = System.currentTimeMillis() + ms;
        while (!c.getAsBoolean()) {
            if (System.currentTimeMillis() > end) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(50);
        }
    }

    @Test
    void startsRestartsAfterKillReportsCountersAndStops() throws Exception {
        DiskSpec s = spec("vda", "a.raw");
        sup.ensure(dom, List.of(s));
        assertTrue(sup.features().controlSocket(), "--help advertises --control-socket");
        ManagedBackend b = sup.ofDomain(dom).getFirst();
        assertEquals(ManagedBackend.State.RUNNING, b.state());
        long pid = b.pid();
        JsonNode st = sup.statusJson().get(0);
        assertEquals(42, st.path("requests").asInt(), "counters from the control socket: " + st);
        assertEquals("running", st.path("state").asText());
        assertTrue(Files.exists(Path.of(s.socket())));
        assertTrue(Files.exists(StateFiles.file(cfg.stateDir(), b.key())));

        // ensure again: nothing restarted
        sup.ensure(dom, List.of(s));
        assertEquals(pid, sup.ofDomain(dom).getFirst().pid());

        ProcessHandle.of(pid).orElseThrow().destroyForcibly();
        waitFor("restart", 30_000, () -> b.state() == ManagedBackend.State.RUNNING && b.pid() != pid && b.pid() > 0);
        JsonNode st2 = sup.statusJson().get(0);
        assertEquals(1, st2.path("restarts").asInt(), st2.toString());
        assertTrue(st2.path("last_error").asText().contains("exited with code 137"), st2.toString());

        sup.release(dom, "destroyed");
        assertTrue(sup.all().isEmpty());
        assertFalse(Files.exists(Path.of(s.socket())));
        assertFalse(Files.exists(StateFiles.file(cfg.stateDir(), b.key())));
        long last = b.pid();
        waitFor("backend exit", 10_000, () -> ProcessHandle.of(last).map(h -> !h.isAlive()).orElse(true));
    }

    @Test
    void aFailingStartIsReportedAndNothingIsLeftRunning() {
        IOException e = assertThrows(IOException.class, () -> sup.ensure(dom, List.of(spec("vda", "a.raw"), spec("vdb", "missing.raw"))));
        assertTrue(e.getMessage().contains("vdb: backend exited before listening"), e.getMessage());
        assertTrue(e.getMessage().contains("No such file or directory"), e.getMessage());
        assertTrue(sup.all().isEmpty(), "the sibling that did start was stopped: " + sup.all());
    }

    @Test
    void repeatedCrashesBackOff() throws Exception {
        sup.ensure(dom, List.of(spec("vda", "crash.raw")));
        ManagedBackend b = sup.ofDomain(dom).getFirst();
        waitFor("three restarts", 60_000, () -> sup.statusJson().get(0).path("restarts").asInt() >= 3);
        JsonNode st = sup.statusJson().get(0);
        assertTrue(st.path("last_error").asText().contains("exited with code 3"), st.toString());
        assertTrue(b.rapidFailuresForTest() >= 2, "counted as rapid failures");
        assertNotEquals("stopped", st.path("state").asText());
    }

    @Test
    void aNewDaemonAdoptsRunningBackends() throws Exception {
        DiskSpec s = spec("vda", "a.raw");
        sup.ensure(dom, List.of(s));
        long pid = sup.ofDomain(dom).getFirst().pid();
        sup.close(); // the daemon goes away; the backend keeps running
        Supervisor next = new Supervisor(cfg);
        try {
            next.adopt(dom, List.of(s));
            ManagedBackend b = next.ofDomain(dom).getFirst();
            assertEquals(pid, b.pid());
            assertTrue(next.statusJson().get(0).path("adopted").asBoolean());
            // supervision works on the adopted process too
            ProcessHandle.of(pid).orElseThrow().destroyForcibly();
            waitFor("restart of the adopted backend", 30_000, () -> b.state() == ManagedBackend.State.RUNNING && b.pid() != pid && b.pid() > 0);
            next.release(dom, "done");
            assertTrue(next.all().isEmpty());
        } finally {
            next.close();
            sup = new Supervisor(cfg);
        }
    }

    @Test
    void socketsOutsideTheSocketDirectoryAreRefused() {
        DiskSpec s = new DiskSpec("vda", "/tmp/elsewhere.sock", dir.resolve("a.raw").toString(), "file", "raw", false, null, null,
                null, 1, null, null);
        IOException e = assertThrows(IOException.class, () -> sup.ensure(dom, List.of(s)));
        assertTrue(e.getMessage().contains("not in vhostblk's socket directory"), e.getMessage());
    }
    @Test
    void backendsRunAsTheConfiguredUser() throws Exception {
        org.junit.jupiter.api.Assumptions.assumeTrue("root".equals(System.getProperty("user.name")),
                "running a backend as another user needs root");
        Process id = new ProcessBuilder("id", "-u", "libvirt-qemu").redirectErrorStream(true).start();
        String uid = new String(id.getInputStream().readAllBytes()).strip();
        org.junit.jupiter.api.Assumptions.assumeTrue(id.waitFor() == 0, "no libvirt-qemu user (libvirt-daemon-system not installed)");
        // The fake backend's launcher must be reachable by that user.
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxr-xr-x"));
        Properties p = new Properties();
        p.setProperty("run.dir", dir.resolve("run-user").toString());
        p.setProperty("log.dir", dir.resolve("log-user").toString());
        p.setProperty("backend.launcher", dir.resolve("fake-backend").toString());
        p.setProperty("backend.user", "libvirt-qemu");
        p.setProperty("socket.group", "libvirt-qemu");
        p.setProperty("backend.stop-timeout-s", "5");
        PluginConfig userCfg = PluginConfig.from(dir.resolve("none.conf"), p);
        Supervisor s2 = new Supervisor(userCfg);
        try {
            DiskSpec d = new DiskSpec("vdb", userCfg.socketDir().resolve("unit-vdb.sock").toString(),
                    dir.resolve("b.raw").toString(), "file", "raw", false, null, null, null, 1, null, null);
            s2.ensure(dom, List.of(d));
            ManagedBackend b = s2.ofDomain(dom).getFirst();
            assertEquals(ManagedBackend.State.RUNNING, b.state());
            String status = Files.readString(Path.of("/proc/" + b.pid() + "/status"));
            String uidLine = status.lines().filter(l -> l.startsWith("Uid:")).findFirst().orElseThrow();
            assertEquals(uid, uidLine.split("\\s+")[1], "real uid of the backend: " + uidLine);
            assertEquals(uid, uidLine.split("\\s+")[2], "effective uid of the backend: " + uidLine);
            assertTrue(Files.exists(Path.of(d.socket())), "the backend, running as libvirt-qemu, created its socket");
        } finally {
            s2.release(dom, "test end");
            s2.close();
        }
    }
}
