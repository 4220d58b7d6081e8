package io.vhostblk.it;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The plugin end to end with a real libvirtd and QEMU (TCG): {@code vhostblk convert}, plain
 * {@code virsh start/destroy}, the libvirt hook asking {@code vhostblk daemon} for backends, a
 * Linux guest writing and verifying data on its disks, hotplug, supervision after SIGKILL, a
 * daemon restart that leaves the guest alone, and {@code vhostblk revert}.
 *
 * <p>Host side effects (documented in plugin/README.md): starts virtlogd/libvirtd when they do
 * not run; installs {@code /etc/libvirt/hooks/qemu.d/vhostblk} pointing at this build with a
 * test configuration (and restarts libvirtd when the hook is new or changed, because libvirt
 * only looks for hooks at start); uses run directory {@value #RUN_DIR}. Domains {@code vbit-*}
 * are destroyed and undefined before and after. QEMU runs as libvirt-qemu: the kernel, initrd
 * and console files are in a world-readable directory under /tmp; the backends run as root and
 * their sockets get group libvirt-qemu.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class LibvirtPluginIT {
    static final String RUN_DIR = "/run/vhostblk-it";
    static final String URI = "qemu:///system";
    static final ObjectMapper JSON = new ObjectMapper();
    static final Duration BOOT_TIMEOUT = Duration.ofSeconds(180);

    static Path work;      // target/it-work/libvirt: images, logs
    static Path pub;       // /tmp/vbit-XXXX (0755): kernel, initrd, consoles
    static Path config;
    static Path kernel;
    static Path initrd;
    static Process daemon;
    static int daemonStarts;
    static boolean ready;

    // ---- setup ----------------------------------------------------------------------------------

    @BeforeAll
    static void setUp() throws Exception {
        assumeTrue("root".equals(System.getProperty("user.name")), "needs root (libvirtd, hooks)");
        assumeTrue(Files.isExecutable(Path.of("/usr/sbin/libvirtd")), "libvirt-daemon-system not installed");
        assumeTrue(Files.isExecutable(Path.of("/usr/bin/virsh")), "libvirt-clients not installed");
        assumeTrue(Files.isRegularFile(ItPaths.repoRoot().resolve("plugin/target/vhostblk-plugin.jar")), "plugin not built");
        assumeTrue(Files.isRegularFile(VhostblkBackend.jar()), "backend not built");
        long t0 = System.nanoTime();
        work = ItPaths.workDir("libvirt");
        pub = Files.createTempDirectory(Path.of("/tmp"), "vbit-");
        Files.setPosixFilePermissions(pub, PosixFilePermissions.fromString("rwxr-xr-x"));
        GuestImage img = GuestImage.get();
        kernel = img.kernel();
        initrd = pub.resolve("initrd.gz");
        Files.copy(img.initrd(), initrd, StandardCopyOption.REPLACE_EXISTING);
        Files.setPosixFilePermissions(initrd, PosixFilePermissions.fromString("rw-r--r--"));
        config = work.resolve("vhostblk.conf");
        Files.writeString(config, "run.dir=" + RUN_DIR + "\nlog.dir=" + work.resolve("logs") + "\nbackend.launcher="
                + VhostblkBackend.launcher() + "\nbackend.start-timeout-s=60\nsupervisor.backoff-max-s=5\n");
        // the hook must exist before libvirtd starts
        String before = hookText();
        Cmd ih = vhostblk("install-hook", "--config", config.toString());
        assertEquals(0, ih.rc, ih.out);
        ensureLibvirtd(!hookText().equals(before));
        for (String d : List.of("vbit-main", "vbit-qcow2", "vbit-hot")) {
            cleanupDomain(d);
        }
        killLeftovers();
        ready = true;
        System.out.printf("[libvirt-it] setup %.1f s (libvirtd %s)%n", (System.nanoTime() - t0) / 1e9,
                run(List.of("virsh", "-c", URI, "version", "--daemon"), 30).out.lines().filter(l -> l.contains("daemon")).findFirst().orElse("?"));
    }

    @AfterAll
    static void tearDown() throws Exception {
        if (!ready) {
            return;
        }
        for (String d : List.of("vbit-main", "vbit-qcow2", "vbit-hot")) {
            cleanupDomain(d);
        }
        stopDaemon();
        killLeftovers();
        try (var s = Files.list(pub)) {
            for (Path p : s.toList()) {
                if (p.getFileName().toString().startsWith("console")) {
                    Files.copy(p, work.resolve(p.getFileName()), StandardCopyOption.REPLACE_EXISTING);
                }
            }
        }
        ItPaths.deleteRecursively(pub);
    }

    static String hookText() throws IOException {
        Path h = Path.of("/etc/libvirt/hooks/qemu.d/vhostblk");
        return Files.exists(h) ? Files.readString(h) : "";
    }

    static void ensureLibvirtd(boolean restart) throws Exception {
        Files.createDirectories(Path.of("/run/libvirt"));
        boolean systemd = Files.isDirectory(Path.of("/run/systemd/system"));
        if (systemd) {
            run(List.of("systemctl", restart ? "restart" : "start", "virtlogd", "libvirtd"), 120);
        } else {
            if (!pidAlive(Path.of("/run/virtlogd.pid"))) {
                run(List.of("virtlogd", "-d"), 30);
            }
            if (restart && pidAlive(Path.of("/run/libvirtd.pid"))) {
                long pid = Long.parseLong(Files.readString(Path.of("/run/libvirtd.pid")).trim());
                ProcessHandle.of(pid).ifPresent(ProcessHandle::destroy);
                waitFor("libvirtd to exit", Duration.ofSeconds(30), () -> ProcessHandle.of(pid).map(h -> !h.isAlive()).orElse(true));
            }
            if (!pidAlive(Path.of("/run/libvirtd.pid"))) {
                Cmd c = run(List.of("libvirtd", "-d"), 60);
                assertEquals(0, c.rc, "libvirtd -d: " + c.out);
            }
        }
        waitFor("libvirtd to answer", Duration.ofSeconds(60), () -> run(List.of("virsh", "-c", URI, "list"), 20).rc == 0);
    }

    static boolean pidAlive(Path pidFile) {
        try {
            long pid = Long.parseLong(Files.readString(pidFile).trim());
            return ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false);
        } catch (IOException | NumberFormatException e) {
            return false;
        }
    }

    static void startDaemon() throws IOException {
        Path log = work.resolve("daemon-" + (++daemonStarts) + ".out");
        ProcessBuilder pb = new ProcessBuilder(launcher().toString(), "daemon", "--config", config.toString())
                .redirectErrorStream(true).redirectOutput(log.toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        pb.environment().put("JAVA_HOME", System.getProperty("java.home"));
        daemon = pb.start();
        waitFor("the daemon to answer", Duration.ofSeconds(60), () -> vhostblk("status", "--config", config.toString()).rc == 0);
    }

    static void stopDaemon() throws InterruptedException {
        if (daemon != null && daemon.isAlive()) {
            daemon.destroy();
            if (!daemon.waitFor(30, TimeUnit.SECONDS)) {
                daemon.destroyForcibly();
            }
        }
        daemon = null;
    }

    static void cleanupDomain(String name) {
        run(List.of("virsh", "-c", URI, "destroy", name), 60);
        run(List.of("virsh", "-c", URI, "undefine", name), 60);
    }

    /** Backends that this test's daemon started and that outlived it (never other people's processes). */
    static List<ProcessHandle> ourBackends() {
        List<ProcessHandle> out = new ArrayList<>();
        ProcessHandle.allProcesses().forEach(p -> {
            String c = cmdline(p.pid());
            if (c != null && c.contains("io.vhostblk.server.BackendMain") && c.contains(RUN_DIR + "/sockets/")) {
                out.add(p);
            }
        });
        return out;
    }

    static void killLeftovers() {
        for (ProcessHandle p : ourBackends()) {
            p.destroyForcibly();
        }
    }

    static String cmdline(long pid) {
        try {
            byte[] b = Files.readAllBytes(Path.of("/proc/" + pid + "/cmdline"));
            return new String(b, StandardCharsets.UTF_8).replace('\0', ' ');
        } catch (IOException e) {
            return null;
        }
    }

    // ---- helpers ----------------------------------------------------------------------------------

    record Cmd(int rc, String out) {}

    static Cmd run(List<String> cmd, int timeoutS) {
        try {
            ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true)
                    .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
            pb.environment().put("JAVA_HOME", System.getProperty("java.home"));
            Process p = pb.start();
            byte[] out = p.getInputStream().readAllBytes();
            if (!p.waitFor(timeoutS, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                return new Cmd(-1, new String(out, StandardCharsets.UTF_8) + "\n(timed out)");
            }
            return new Cmd(p.exitValue(), new String(out, StandardCharsets.UTF_8));
        } catch (IOException e) {
            return new Cmd(-1, e.toString());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return new Cmd(-1, "interrupted");
        }
    }

    static Path launcher() {
        return ItPaths.repoRoot().resolve("bin/vhostblk");
    }

    static Cmd vhostblk(String... args) {
        List<String> c = new ArrayList<>(List.of(launcher().toString()));
        c.addAll(List.of(args));
        Cmd r = run(c, 180);
        System.out.println("[libvirt-it] vhostblk " + String.join(" ", args) + " -> " + r.rc + "\n" + r.out.strip());
        return r;
    }

    static Cmd virsh(String... args) {
        List<String> c = new ArrayList<>(List.of("virsh", "-c", URI));
        c.addAll(List.of(args));
        return run(c, 120);
    }

    static void waitFor(String what, Duration timeout, BooleanSupplier cond) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out after " + timeout.toSeconds() + " s waiting for " + what);
            }
            try {
                Thread.sleep(200);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError("interrupted");
            }
        }
    }

    static JsonNode status() {
        Cmd c = run(List.of(launcher().toString(), "status", "--json", "--config", config.toString()), 60);
        assertEquals(0, c.rc, c.out);
        try {
            return JSON.readTree(c.out);
        } catch (IOException e) {
            throw new AssertionError(c.out, e);
        }
    }

    static JsonNode backend(String domain, String target) {
        for (JsonNode b : status()) {
            if (domain.equals(b.path("domain").asText()) && target.equals(b.path("target").asText())) {
                return b;
            }
        }
        return null;
    }

    static String disk(String type, String format, Path image, String target, String extra) {
        return "<disk type='" + type + "' device='disk'><driver name='qemu' type='" + format + "'" + extra + "/>"
                + "<source " + ("block".equals(type) ? "dev" : "file") + "='" + image + "'/><target dev='" + target + "' bus='virtio'/>"
                + "</disk>";
    }

    static String domainXml(String name, String guestArgs, Path console, String disks) {
        StringBuilder ports = new StringBuilder();
        for (int i = 1; i <= 4; i++) {
            ports.append("<controller type='pci' index='").append(i).append("' model='pcie-root-port'/>");
        }
        return "<domain type='qemu'><name>" + name + "</name><memory unit='MiB'>384</memory><vcpu>1</vcpu>"
                + "<os><type arch='x86_64' machine='q35'>hvm</type><kernel>" + kernel + "</kernel><initrd>" + initrd + "</initrd>"
                + "<cmdline>console=ttyS0 quiet panic=-1 no_timer_check vhostblk.test=dd vhostblk.args=" + guestArgs + "</cmdline></os>"
                + "<features><acpi/><apic/></features>"
                + "<on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>"
                + "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>" + disks
                + "<controller type='pci' index='0' model='pcie-root'/>" + ports
                + "<serial type='file'><source path='" + console + "'/><target port='0'/></serial>"
                + "<memballoon model='none'/></devices></domain>";
    }

    static void define(String xml) throws IOException {
        Path f = pub.resolve("define.xml");
        Files.writeString(f, xml);
        Cmd c = virsh("define", f.toString());
        assertEquals(0, c.rc, c.out);
    }

    static String inactiveXml(String name) {
        Cmd c = virsh("dumpxml", "--inactive", "--security-info", name);
        assertEquals(0, c.rc, c.out);
        return c.out;
    }

    /** Waits for the guest's DONE line (the guest then lingers), returns the parsed results. */
    static GuestResult awaitGuest(Path console, String name) {
        long t0 = System.nanoTime();
        long[] lastStateCheck = {0};
        waitFor("guest " + name + " to finish its test (console " + console + ")", BOOT_TIMEOUT, () -> {
            try {
                if (Files.exists(console) && Files.readString(console, StandardCharsets.ISO_8859_1).contains("VHOSTBLK-DONE rc=")) {
                    return true;
                }
            } catch (IOException e) {
                return false;
            }
            if (System.nanoTime() - lastStateCheck[0] > 5_000_000_000L) {
                lastStateCheck[0] = System.nanoTime();
                // the guest lingers after DONE: a domain that is gone before DONE has failed (panic, crash)
                if (!virsh("domstate", name).out.contains("running")) {
                    throw new AssertionError("domain " + name + " stopped before its guest finished; console:\n"
                            + tailOf(console, 25));
                }
            }
            return false;
        });
        GuestResult r = GuestResult.parse(console, 0, Duration.ofNanos(System.nanoTime() - t0));
        System.out.println("[libvirt-it] guest " + name + ": " + r.values());
        return r;
    }

    static String tailOf(Path f, int n) {
        try {
            List<String> l = Files.readAllLines(f, StandardCharsets.ISO_8859_1);
            return String.join("\n", l.subList(Math.max(0, l.size() - n), l.size()));
        } catch (IOException e) {
            return "(" + e + ")";
        }
    }

    static void assertNothingLeft(String domain) {
        List<ProcessHandle> left = ourBackends().stream().filter(p -> {
            String c = cmdline(p.pid());
            return c != null && c.contains("/" + domain + "-");
        }).toList();
        assertTrue(left.isEmpty(), "backend processes left behind: " + left.stream().map(ProcessHandle::pid).toList());
        try (var s = Files.list(Path.of(RUN_DIR, "sockets"))) {
            List<Path> socks = s.filter(p -> p.getFileName().toString().startsWith(domain + "-")).toList();
            assertTrue(socks.isEmpty(), "sockets left behind: " + socks);
        } catch (IOException e) {
            throw new AssertionError(e);
        }
        for (JsonNode b : status()) {
            assertNotEquals(domain, b.path("domain").asText(), "daemon still lists " + b);
        }
    }

    static void assertImageHolds(GuestResult r, String target, Path image) {
        assertEquals("0", r.get("rc_" + target), target + " test failed: " + r.describe());
        String written = r.get("sha256_written_" + target);
        long off = Long.parseLong(r.get("dd_offset_bytes"));
        long len = Long.parseLong(r.get("dd_bytes"));
        assertEquals(written, HostFiles.sha256(image, off, len), target + ": the guest's data is not in " + image);
    }

    // ---- tests ----------------------------------------------------------------------------------

    /** Without the daemon, libvirt refuses to start a converted domain (nothing half-started). */
    @Test
    @Order(1)
    void daemonDownRefusesStartThenConvertStartWriteDestroyRevert() throws Exception {
        String name = "vbit-main";
        Path a = HostFiles.createSparse(work.resolve("main-a.raw"), 64L << 20);
        Path b = HostFiles.createSparse(work.resolve("main-b.raw"), 64L << 20);
        Path console = pub.resolve("console-main.log");
        define(domainXml(name, "devs:vda+vdb,mib:8,linger_s:300", console,
                disk("file", "raw", a, "vda", " cache='none'").replace("</disk>", "<serial>vbit-main-a</serial></disk>")
                        + disk("file", "raw", b, "vdb", "")));
        String original = inactiveXml(name);

        long t0 = System.nanoTime();
        Cmd conv = vhostblk("convert", name, "--config", config.toString());
        assertEquals(0, conv.rc, conv.out);
        assertTrue(conv.out.contains("converted 2 disk(s)"), conv.out);
        Cmd again = vhostblk("convert", name, "--config", config.toString());
        assertTrue(again.out.contains("nothing to change"), again.out);
        String converted = inactiveXml(name);
        assertTrue(converted.contains("type='vhostuser'") && converted.contains("<access mode='shared'/>"), converted);
        System.out.printf("[libvirt-it] convert + idempotent re-convert: %.1f s%n", (System.nanoTime() - t0) / 1e9);

        // the daemon is not running yet: the hook must make libvirt refuse the start
        Cmd refused = virsh("start", name);
        assertNotEquals(0, refused.rc, refused.out);
        assertTrue(refused.out.contains("vhostblk daemon is not reachable"), refused.out);
        assertTrue(virsh("domstate", name).out.contains("shut off"));
        assertTrue(ourBackends().isEmpty());

        startDaemon();
        t0 = System.nanoTime();
        Cmd start = virsh("start", name);
        assertEquals(0, start.rc, start.out);
        System.out.printf("[libvirt-it] virsh start with 2 backends: %.1f s%n", (System.nanoTime() - t0) / 1e9);
        JsonNode st = status();
        assertEquals(2, st.size(), st.toString());
        for (JsonNode x : st) {
            assertEquals("running", x.path("state").asText(), x.toString());
            assertTrue(x.path("pid").asLong() > 0);
        }
        Cmd table = vhostblk("status", "--config", config.toString());
        assertTrue(table.out.contains("vbit-main") && table.out.contains("running"), table.out);

        GuestResult r = awaitGuest(console, name);
        assertEquals(0, r.doneRc().orElse(-1), r.describe());
        assertImageHolds(r, "vda", a);
        assertImageHolds(r, "vdb", b);

        t0 = System.nanoTime();
        Cmd destroy = virsh("destroy", name);
        assertEquals(0, destroy.rc, destroy.out);
        System.out.printf("[libvirt-it] virsh destroy incl. backend stop: %.1f s%n", (System.nanoTime() - t0) / 1e9);
        assertNothingLeft(name);

        Cmd rev = vhostblk("revert", name, "--config", config.toString());
        assertEquals(0, rev.rc, rev.out);
        assertEquals(original, inactiveXml(name), "revert restores the original definition exactly");
    }

    /** qcow2 with a backing file: runs once the backend accepts --format qcow2. */
    @Test
    @Order(2)
    void qcow2WithBackingFile() throws Exception {
        Path base = work.resolve("base.qcow2");
        Path overlay = work.resolve("overlay.qcow2");
        assertEquals(0, run(List.of("qemu-img", "create", "-q", "-f", "qcow2", base.toString(), "64M"), 60).rc);
        assertEquals(0, run(List.of("qemu-img", "create", "-q", "-f", "qcow2", "-b", base.toString(), "-F", "qcow2",
                overlay.toString()), 60).rc);
        assumeTrue(backendSupportsQcow2(base), "bin/vhostblk-backend does not support --format qcow2 yet");
        if (daemon == null) {
            startDaemon();
        }
        String name = "vbit-qcow2";
        Path raw = HostFiles.createSparse(work.resolve("qcow2-b.raw"), 64L << 20);
        Path console = pub.resolve("console-qcow2.log");
        define(domainXml(name, "devs:vda+vdb,mib:8,linger_s:300", console,
                disk("file", "qcow2", overlay, "vda", "").replace("</source>", "").replace("<target",
                        "<backingStore type='file'><format type='qcow2'/><source file='" + base + "'/></backingStore><target")
                        + disk("file", "raw", raw, "vdb", "")));
        String original = inactiveXml(name);
        assertEquals(0, vhostblk("convert", name, "--config", config.toString()).rc);
        Cmd start = virsh("start", name);
        assertEquals(0, start.rc, start.out);
        GuestResult r = awaitGuest(console, name);
        assertEquals(0, r.doneRc().orElse(-1), r.describe());
        assertEquals("0", r.get("rc_vda"), r.describe());
        assertImageHolds(r, "vdb", raw);
        assertEquals(0, virsh("destroy", name).rc);
        assertNothingLeft(name);
        Cmd check = run(List.of("qemu-img", "check", overlay.toString()), 60);
        assertEquals(0, check.rc, check.out);
        assertEquals(0, vhostblk("revert", name, "--config", config.toString()).rc);
        assertEquals(original, inactiveXml(name));
    }

    static boolean backendSupportsQcow2(Path image) throws Exception {
        Path sock = pub.resolve("qcow2-probe.sock");
        ProcessBuilder pb = new ProcessBuilder(VhostblkBackend.launcher().toString(), "--format", "qcow2", "--blk-file",
                image.toString(), "--socket-path", sock.toString()).redirectErrorStream(true);
        pb.environment().put("JAVA_HOME", System.getProperty("java.home"));
        Process p = pb.start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (p.isAlive() && !Files.exists(sock) && System.nanoTime() < deadline) {
            Thread.sleep(50);
        }
        if (p.isAlive()) {
            // Listening (or at least still serving): it accepted the format.
            p.destroy();
            p.waitFor(20, TimeUnit.SECONDS);
            Files.deleteIfExists(sock);
            return true;
        }
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        Files.deleteIfExists(sock);
        return !out.contains("not supported");
    }

    /**
     * One boot: SIGKILL of a backend is recovered by the supervisor, a disk is hotplugged and the
     * guest does I/O on it and on the restarted one, a daemon restart leaves the guest and its
     * backends alone (adopted), the disk is unplugged, destroy leaves nothing behind.
     */
    @Test
    @Order(3)
    void hotplugSupervisionAndDaemonRestart() throws Exception {
        if (daemon == null) {
            startDaemon();
        }
        String name = "vbit-hot";
        Path a = HostFiles.createSparse(work.resolve("hot-a.raw"), 64L << 20);
        Path b = HostFiles.createSparse(work.resolve("hot-b.raw"), 64L << 20);
        Path console = pub.resolve("console-hot.log");
        // the guest waits for the hotplugged vdb, tests it, then tests vda (served by a restarted backend)
        define(domainXml(name, "devs:vdb+vda,wait_s:150,mib:8,linger_s:300", console, disk("file", "raw", a, "vda", "")));
        assertEquals(0, vhostblk("convert", name, "--config", config.toString()).rc);
        Cmd start = virsh("start", name);
        assertEquals(0, start.rc, start.out);
        long pid1 = backend(name, "vda").path("pid").asLong();
        // kill only once the guest's driver has probed vda: requests in flight at the moment of a
        // crash are lost until the backend supports inflight tracking (VHOST_USER_GET_INFLIGHT_FD)
        waitFor("the guest to probe its disk", Duration.ofSeconds(90), () -> {
            try {
                return Files.exists(console) && Files.readString(console, StandardCharsets.ISO_8859_1).contains("virtio modules loaded");
            } catch (IOException e) {
                return false;
            }
        });

        // SIGKILL: the supervisor restarts the backend with the same arguments, QEMU reconnects
        long t0 = System.nanoTime();
        ProcessHandle.of(pid1).orElseThrow().destroyForcibly();
        waitFor("the supervisor to restart vda's backend", Duration.ofSeconds(60), () -> {
            JsonNode x = backend(name, "vda");
            return x != null && "running".equals(x.path("state").asText()) && x.path("pid").asLong() != pid1
                    && x.path("restarts").asInt() == 1;
        });
        System.out.printf("[libvirt-it] backend restart after SIGKILL: %.1f s%n", (System.nanoTime() - t0) / 1e9);
        assertTrue(backend(name, "vda").path("last_error").asText().contains("exited"), status().toString());

        // hotplug: backend first, then attach-device
        t0 = System.nanoTime();
        Cmd att = vhostblk("attach", name, "--source", b.toString(), "--target", "vdb", "--config", config.toString());
        assertEquals(0, att.rc, att.out);
        System.out.printf("[libvirt-it] attach: %.1f s%n", (System.nanoTime() - t0) / 1e9);
        assertTrue(virsh("dumpxml", name).out.contains("vbit-hot-vdb.sock"));
        assertTrue(inactiveXml(name).contains("vbit-hot-vdb.sock"), "attached to the persistent definition too");

        GuestResult r = awaitGuest(console, name);
        assertEquals(0, r.doneRc().orElse(-1), r.describe());
        assertImageHolds(r, "vdb", b);
        assertImageHolds(r, "vda", a);

        // daemon restart: the guest and its backends are left alone, the new daemon adopts them
        Map<String, Long> pids = new HashMap<>();
        for (JsonNode x : status()) {
            pids.put(x.path("target").asText(), x.path("pid").asLong());
        }
        stopDaemon();
        for (long pid : pids.values()) {
            assertTrue(ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false), "backend " + pid + " died with the daemon");
        }
        t0 = System.nanoTime();
        startDaemon();
        waitFor("the new daemon to adopt both backends", Duration.ofSeconds(60), () -> status().size() == 2);
        System.out.printf("[libvirt-it] daemon restart + adoption: %.1f s%n", (System.nanoTime() - t0) / 1e9);
        for (JsonNode x : status()) {
            assertEquals(pids.get(x.path("target").asText()).longValue(), x.path("pid").asLong(), "same process: " + x);
            assertTrue(x.path("adopted").asBoolean(), x.toString());
            assertEquals("running", x.path("state").asText());
        }
        assertTrue(virsh("domstate", name).out.contains("running"));

        // hot-unplug: detach-device, wait for the guest, then the backend stops
        t0 = System.nanoTime();
        Cmd det = vhostblk("detach", name, "--target", "vdb", "--config", config.toString());
        assertEquals(0, det.rc, det.out);
        System.out.printf("[libvirt-it] detach: %.1f s%n", (System.nanoTime() - t0) / 1e9);
        assertFalse(Files.exists(Path.of(RUN_DIR, "sockets", name + "-vdb.sock")));
        assertFalse(ProcessHandle.of(pids.get("vdb")).map(ProcessHandle::isAlive).orElse(false));
        assertFalse(inactiveXml(name).contains("vbit-hot-vdb.sock"));

        assertEquals(0, virsh("destroy", name).rc);
        assertNothingLeft(name);
    }
}
