package io.vhostblk.plugin.daemon;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.vhostblk.plugin.config.PluginConfig;
import io.vhostblk.plugin.xml.DiskSpec;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

import java.io.File;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.GroupPrincipal;
import java.nio.file.attribute.PosixFileAttributeView;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Owns the backend processes: one per (domain, disk). Starts them and waits until their socket
 * accepts, restarts them with the same arguments when they die while their domain runs (with
 * back-off on repeated crashes), stops them when the domain is released, and adopts the ones a
 * previous daemon started (state files under run.dir/state) instead of killing them.
 */
public final class Supervisor implements AutoCloseable {
    private static final Logger LOG = LogManager.getLogger(Supervisor.class);
    /** a backend that ran at least this long before dying is restarted at once */
    private static final Duration HEALTHY_UPTIME = Duration.ofSeconds(30);

    private final PluginConfig cfg;
    private final Map<String, ManagedBackend> backends = new ConcurrentHashMap<>();
    private final Map<String, Object> domainLocks = new ConcurrentHashMap<>();
    private final ScheduledExecutorService timer = Executors.newScheduledThreadPool(2, r -> {
        Thread t = new Thread(r, "supervisor");
        t.setDaemon(true);
        return t;
    });
    private volatile BackendFeatures features;

    public Supervisor(PluginConfig cfg) throws IOException {
        this.cfg = cfg;
        prepareDirectories();
    }

    // ---- directories -----------------------------------------------------------------------

    private void prepareDirectories() throws IOException {
        Files.createDirectories(cfg.runDir());
        Files.setPosixFilePermissions(cfg.runDir(), PosixFilePermissions.fromString("rwxr-xr-x"));
        for (Path d : List.of(cfg.socketDir(), cfg.controlDir())) {
            Files.createDirectories(d);
            Optional<GroupPrincipal> g = socketGroup();
            if (g.isPresent()) {
                Files.getFileAttributeView(d, PosixFileAttributeView.class).setGroup(g.get());
            }
            // rwx for the backends (root or backend.user), x for QEMU's group; setgid: sockets inherit the group
            Files.setPosixFilePermissions(d, PosixFilePermissions.fromString("rwxrwx---"));
            chmodSetgid(d);
            if (cfg.backendUser() != null) {
                chown(d, cfg.backendUser());
            }
        }
        Files.createDirectories(cfg.stateDir());
        Files.setPosixFilePermissions(cfg.stateDir(), PosixFilePermissions.fromString("rwx------"));
        Files.createDirectories(cfg.logDir());
    }

    private Optional<GroupPrincipal> socketGroup() {
        if (cfg.socketGroup() == null) {
            return Optional.empty();
        }
        try {
            return Optional.of(cfg.runDir().getFileSystem().getUserPrincipalLookupService()
                    .lookupPrincipalByGroupName(cfg.socketGroup()));
        } catch (IOException e) {
            LOG.warn("socket.group {} does not exist on this host; sockets keep the backend's group", cfg.socketGroup());
            return Optional.empty();
        }
    }

    private static void chmodSetgid(Path d) {
        try {
            Files.setAttribute(d, "unix:mode", 02770);
        } catch (IOException | UnsupportedOperationException | IllegalArgumentException e) {
            LOG.debug("cannot set setgid on {}: {}", d, e.toString());
        }
    }

    private static void chown(Path p, String user) {
        try {
            Files.setOwner(p, p.getFileSystem().getUserPrincipalLookupService().lookupPrincipalByName(user));
        } catch (IOException e) {
            LOG.warn("cannot chown {} to {}: {}", p, user, e.toString());
        }
    }

    // ---- public operations -------------------------------------------------------------------

    public BackendFeatures features() {
        BackendFeatures f = features;
        if (f == null) {
            synchronized (this) {
                if (features == null) {
                    features = BackendFeatures.probe(cfg.backendLauncher(), backendEnv());
                    LOG.info("backend {}: control socket {}, --discard {}", cfg.backendLauncher(),
                            features.controlSocket() ? "supported" : "not supported yet",
                            features.discard() ? "supported" : "not supported yet");
                }
                f = features;
            }
        }
        return f;
    }

    private Object lockFor(DomainRef d) {
        return domainLocks.computeIfAbsent(d.key(), k -> new Object());
    }

    /**
     * Makes sure every disk has a backend listening on its socket, starting missing ones in
     * parallel; returns when all accept connections. Throws with every failure's message.
     */
    public void ensure(DomainRef d, List<DiskSpec> disks) throws IOException {
        synchronized (lockFor(d)) {
            List<ManagedBackend> starting = new ArrayList<>();
            for (DiskSpec s : disks) {
                checkSocketPath(s);
                String key = ManagedBackend.key(d, s.target());
                ManagedBackend existing = backends.get(key);
                if (existing != null) {
                    synchronized (existing) {
                        if (existing.state == ManagedBackend.State.RUNNING && existing.spec.equals(s) && !existing.draining) {
                            continue;
                        }
                        if (existing.state == ManagedBackend.State.BACKOFF && existing.spec.equals(s)) {
                            // an operator or libvirt wants it now: retry at once
                            if (existing.pendingRestart != null) {
                                existing.pendingRestart.cancel(false);
                            }
                        }
                    }
                    stop(existing, "replaced (new start of " + d + ")");
                }
                ManagedBackend b = newBackend(d, s);
                backends.put(key, b);
                starting.add(b);
            }
            List<CompletableFuture<String>> results = new ArrayList<>();
            for (ManagedBackend b : starting) {
                results.add(CompletableFuture.supplyAsync(() -> startAndWait(b), r -> Thread.ofVirtual().start(r)));
            }
            List<String> errors = new ArrayList<>();
            for (CompletableFuture<String> f : results) {
                String e = f.join();
                if (e != null) {
                    errors.add(e);
                }
            }
            if (!errors.isEmpty()) {
                // nothing half-started: stop what did start for this request
                for (ManagedBackend b : starting) {
                    stop(b, "start of a sibling disk failed");
                }
                throw new IOException(String.join("; ", errors));
            }
        }
    }

    /** Stops every backend of the domain. For a completed outgoing migration, waits for the source QEMU to go first. */
    public void release(DomainRef d, String reason) {
        List<ManagedBackend> mine = ofDomain(d);
        if (mine.isEmpty()) {
            return;
        }
        if ("migrated".equals(reason)) {
            for (ManagedBackend b : mine) {
                synchronized (b) {
                    b.draining = true;
                }
                Thread.ofVirtual().start(() -> drainThenStop(b));
            }
            return;
        }
        synchronized (lockFor(d)) {
            List<CompletableFuture<Void>> fs = new ArrayList<>();
            for (ManagedBackend b : mine) {
                fs.add(CompletableFuture.runAsync(() -> stop(b, "domain released (" + reason + ")"), r -> Thread.ofVirtual().start(r)));
            }
            fs.forEach(CompletableFuture::join);
        }
    }

    public boolean stopDisk(DomainRef d, String target) {
        ManagedBackend b = backends.get(ManagedBackend.key(d, target));
        if (b == null) {
            return false;
        }
        synchronized (lockFor(d)) {
            stop(b, "disk detached");
        }
        return true;
    }

    public List<ManagedBackend> ofDomain(DomainRef d) {
        List<ManagedBackend> out = new ArrayList<>();
        for (ManagedBackend b : backends.values()) {
            if (b.domain.key().equals(d.key())) {
                out.add(b);
            }
        }
        return out;
    }

    public Collection<ManagedBackend> all() {
        return List.copyOf(backends.values());
    }

    /** Distinct domains that have backends. */
    public List<DomainRef> domains() {
        Map<String, DomainRef> m = new LinkedHashMap<>();
        for (ManagedBackend b : backends.values()) {
            m.putIfAbsent(b.domain.key(), b.domain);
        }
        return List.copyOf(m.values());
    }

    public ArrayNode statusJson() {
        ArrayNode a = Json.MAPPER.createArrayNode();
        List<ManagedBackend> list = new ArrayList<>(backends.values());
        list.sort((x, y) -> x.domain.name().equals(y.domain.name()) ? x.spec.target().compareTo(y.spec.target())
                : x.domain.name().compareTo(y.domain.name()));
        for (ManagedBackend b : list) {
            JsonNode counters = BackendControl.status(b.control, Duration.ofSeconds(1));
            a.add(b.toJson(counters));
        }
        return a;
    }

    /**
     * On daemon start, for a running domain: take over backends that a previous daemon started
     * (matching state file, same pid and process start time, still alive) and start the missing ones.
     */
    public void adopt(DomainRef d, List<DiskSpec> disks) {
        List<DiskSpec> missing = new ArrayList<>();
        synchronized (lockFor(d)) {
            for (DiskSpec s : disks) {
                String key = ManagedBackend.key(d, s.target());
                if (backends.containsKey(key)) {
                    continue;
                }
                ManagedBackend b = newBackend(d, s);
                Optional<ProcessHandle> h = StateFiles.adoptable(cfg.stateDir(), b);
                if (h.isPresent()) {
                    synchronized (b) {
                        b.handle = h.get();
                        b.adopted = true;
                        b.state = ManagedBackend.State.RUNNING;
                        b.startedAt = h.get().info().startInstant().orElse(Instant.now());
                        b.restarts = StateFiles.restarts(cfg.stateDir(), b);
                        watch(b, b.generation, h.get().onExit().thenApply(ph -> (Integer) null));
                    }
                    backends.put(key, b);
                    LOG.info("{} {}: adopted running backend pid {}", d, s.target(), h.get().pid());
                } else {
                    missing.add(s);
                }
            }
        }
        if (!missing.isEmpty()) {
            LOG.warn("{}: no running backend for {}; starting (QEMU reconnects)", d,
                    missing.stream().map(DiskSpec::target).toList());
            try {
                ensure(d, missing);
            } catch (IOException e) {
                LOG.error("{}: cannot start backends: {}", d, e.getMessage());
            }
        }
    }

    /** Kills backends recorded in state files that no running domain claims (left by a crash of everything). */
    public void reapOrphans(java.util.Set<String> activeDomainKeys) {
        for (StateFiles.Entry e : StateFiles.list(cfg.stateDir())) {
            if (backends.containsKey(e.key()) || activeDomainKeys.contains(e.domainKey())) {
                continue;
            }
            Optional<ProcessHandle> h = StateFiles.liveProcess(e);
            if (h.isPresent()) {
                LOG.warn("stopping orphaned backend pid {} ({}): its domain is not running", h.get().pid(), e.key());
                h.get().destroy();
                try {
                    h.get().onExit().get(cfg.backendStopTimeout().toSeconds(), TimeUnit.SECONDS);
                } catch (Exception ex) {
                    h.get().destroyForcibly();
                }
            }
            deleteQuietly(Path.of(e.socket()));
            StateFiles.delete(cfg.stateDir(), e.key());
        }
    }

    @Override
    public void close() {
        // Backends keep serving running guests while the daemon restarts: do not stop them.
        timer.shutdownNow();
    }

    // ---- internals -----------------------------------------------------------------------------

    private void checkSocketPath(DiskSpec s) throws IOException {
        Path sock = Path.of(s.socket()).normalize();
        if (!sock.getParent().equals(cfg.socketDir().normalize())) {
            throw new IOException("disk " + s.target() + ": socket " + s.socket() + " is not in vhostblk's socket directory "
                    + cfg.socketDir() + " (converted with another run.dir? re-run vhostblk revert + convert)");
        }
    }

    private ManagedBackend newBackend(DomainRef d, DiskSpec s) {
        String base = Path.of(s.socket()).getFileName().toString().replaceAll("\\.sock$", "");
        Path log = cfg.logDir().resolve(base + ".log");
        Path control = features().controlSocket() ? cfg.controlDir().resolve(base + ".ctl") : null;
        List<String> cmd = new ArrayList<>();
        if (cfg.backendUser() != null) {
            cmd.addAll(List.of("setpriv", "--reuid=" + cfg.backendUser(),
                    "--regid=" + (cfg.socketGroup() != null ? cfg.socketGroup() : cfg.backendUser()), "--init-groups", "--"));
        }
        cmd.add(cfg.backendLauncher().toString());
        cmd.addAll(s.backendArgs(features().discard()));
        if (control != null) {
            cmd.addAll(List.of("--control-socket", control.toString()));
        }
        return new ManagedBackend(d, s, log, control, cmd);
    }

    private Map<String, String> backendEnv() {
        Map<String, String> env = new HashMap<>();
        env.put("JAVA_HOME", System.getProperty("java.home"));
        if (cfg.backendJavaOpts() != null) {
            env.put("VHOSTBLK_JAVA_OPTS", cfg.backendJavaOpts());
        }
        return env;
    }

    /** Starts {@code b} and waits until its socket accepts; returns null or an error message. */
    private String startAndWait(ManagedBackend b) {
        try {
            spawn(b);
        } catch (IOException e) {
            synchronized (b) {
                b.state = ManagedBackend.State.FAILED;
                b.lastError = e.getMessage();
            }
            backends.remove(b.key(), b);
            return b.domain + " " + b.spec.target() + ": cannot start backend: " + e.getMessage();
        }
        return waitReady(b);
    }

    private void spawn(ManagedBackend b) throws IOException {
        rotate(b.log);
        Files.deleteIfExists(Path.of(b.spec.socket()));
        if (b.control != null) {
            Files.deleteIfExists(b.control);
        }
        Files.writeString(b.log, "# " + Instant.now() + " vhostblk daemon starts: " + String.join(" ", b.command) + "\n",
                StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        ProcessBuilder pb = new ProcessBuilder(b.command)
                .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")))
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(b.log.toFile()));
        pb.environment().putAll(backendEnv());
        Process p = pb.start();
        long gen;
        synchronized (b) {
            b.process = p;
            b.handle = p.toHandle();
            b.startedAt = Instant.now();
            b.state = ManagedBackend.State.STARTING;
            b.adopted = false;
            gen = ++b.generation;
            watch(b, gen, p.onExit().thenApply(Process::exitValue));
        }
        StateFiles.write(cfg.stateDir(), b);
        LOG.info("{} {}: backend pid {} started for {} ({})", b.domain, b.spec.target(), p.pid(), b.spec.image(), b.spec.format());
    }

    private void watch(ManagedBackend b, long gen, CompletableFuture<Integer> exit) {
        exit.whenComplete((code, err) -> onExit(b, gen, code));
    }

    private String waitReady(ManagedBackend b) {
        Path sock = Path.of(b.spec.socket());
        long deadline = System.nanoTime() + cfg.backendStartTimeout().toNanos();
        while (true) {
            ProcessHandle h;
            synchronized (b) {
                h = b.handle;
                if (b.state == ManagedBackend.State.STOPPING || b.state == ManagedBackend.State.STOPPED) {
                    return b.domain + " " + b.spec.target() + ": backend stopped while starting";
                }
            }
            if (h == null || !h.isAlive()) {
                sleep(100); // let onExit record the exit code
                return b.domain + " " + b.spec.target() + ": backend exited before listening: " + lastLogLine(b.log);
            }
            if (Files.exists(sock) && accepts(sock)) {
                fixSocketOwnership(sock);
                synchronized (b) {
                    if (b.state == ManagedBackend.State.STARTING) {
                        b.state = ManagedBackend.State.RUNNING;
                        b.nextRetry = null;
                    }
                }
                LOG.info("{} {}: backend pid {} listening on {}", b.domain, b.spec.target(), h.pid(), sock);
                return null;
            }
            if (System.nanoTime() > deadline) {
                String msg = b.domain + " " + b.spec.target() + ": backend did not listen on " + sock + " within "
                        + cfg.backendStartTimeout().toSeconds() + " s; " + lastLogLine(b.log);
                synchronized (b) {
                    b.lastError = msg;
                }
                return msg;
            }
            sleep(50);
        }
    }

    private static boolean accepts(Path sock) {
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(sock));
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    private void fixSocketOwnership(Path sock) {
        Optional<GroupPrincipal> g = socketGroup();
        try {
            if (g.isPresent()) {
                Files.getFileAttributeView(sock, PosixFileAttributeView.class).setGroup(g.get());
            }
            Files.setPosixFilePermissions(sock, PosixFilePermissions.fromString("rw-rw----"));
        } catch (IOException e) {
            LOG.warn("cannot set group/mode of {}: {}", sock, e.toString());
        }
    }

    private void onExit(ManagedBackend b, long gen, Integer code) {
        String tail = lastLogLine(b.log);
        Duration delay;
        synchronized (b) {
            if (gen != b.generation) {
                return;
            }
            b.lastExit = code;
            if (b.state == ManagedBackend.State.STOPPING || b.state == ManagedBackend.State.STOPPED) {
                b.state = ManagedBackend.State.STOPPED;
                b.stopped.complete(null);
                return;
            }
            Duration up = b.startedAt == null ? Duration.ZERO : Duration.between(b.startedAt, Instant.now());
            boolean wasStarting = b.state == ManagedBackend.State.STARTING && !b.adopted;
            if (wasStarting && b.restarts == 0) {
                // first start failed: ensure() reports it; no supervision yet
                b.state = ManagedBackend.State.FAILED;
                b.lastError = "exited with code " + code + " while starting: " + tail;
                backends.remove(b.key(), b);
                StateFiles.delete(cfg.stateDir(), b.key());
                return;
            }
            b.rapidFailures = up.compareTo(HEALTHY_UPTIME) < 0 ? b.rapidFailures + 1 : 1;
            b.restarts++;
            long ms = b.rapidFailures <= 1 ? 200 : Math.min(cfg.backoffMax().toMillis(), 1000L << Math.min(20, b.rapidFailures - 2));
            delay = Duration.ofMillis(ms);
            b.state = ManagedBackend.State.BACKOFF;
            b.nextRetry = Instant.now().plus(delay);
            b.lastError = "exited with code " + (code == null ? "?" : code) + " after " + up.toSeconds() + " s: " + tail;
            b.pendingRestart = timer.schedule(() -> restart(b), ms, TimeUnit.MILLISECONDS);
        }
        if (b.rapidFailures > 1) {
            LOG.error("{} {}: backend died again ({} in a row, {} restarts): {}; next restart in {} s", b.domain, b.spec.target(),
                    b.rapidFailures, b.restarts, b.lastError, delay.toMillis() / 1000.0);
        } else {
            LOG.error("{} {}: backend died while its domain runs: {}; restarting with the same arguments", b.domain,
                    b.spec.target(), b.lastError);
        }
    }

    private void restart(ManagedBackend b) {
        synchronized (b) {
            if (b.state != ManagedBackend.State.BACKOFF || backends.get(b.key()) != b) {
                return;
            }
            b.pendingRestart = null;
        }
        try {
            spawn(b);
        } catch (IOException e) {
            LOG.error("{} {}: restart failed: {}", b.domain, b.spec.target(), e.getMessage());
            synchronized (b) {
                b.lastError = "restart failed: " + e.getMessage();
                b.rapidFailures++;
                b.state = ManagedBackend.State.BACKOFF;
                b.pendingRestart = timer.schedule(() -> restart(b), cfg.backoffMax().toMillis(), TimeUnit.MILLISECONDS);
            }
            return;
        }
        String err = waitReady(b);
        if (err == null) {
            LOG.info("{} {}: backend restarted (restart #{}), QEMU reconnects to {}", b.domain, b.spec.target(), b.restarts,
                    b.spec.socket());
            StateFiles.write(cfg.stateDir(), b);
        } else {
            LOG.error("{} {}: restarted backend not ready: {}", b.domain, b.spec.target(), err);
            ProcessHandle h;
            synchronized (b) {
                h = b.handle;
            }
            if (h != null && h.isAlive()) {
                h.destroyForcibly(); // onExit schedules the next try
            }
        }
    }

    /** SIGTERM (the backend finishes in-flight I/O and flushes), SIGKILL after the stop timeout. */
    private void stop(ManagedBackend b, String why) {
        ProcessHandle h;
        synchronized (b) {
            if (b.state == ManagedBackend.State.STOPPED) {
                backends.remove(b.key(), b);
                return;
            }
            if (b.pendingRestart != null) {
                b.pendingRestart.cancel(false);
                b.pendingRestart = null;
            }
            b.state = ManagedBackend.State.STOPPING;
            h = b.handle;
        }
        if (h != null && h.isAlive()) {
            LOG.info("{} {}: stopping backend pid {}: {}", b.domain, b.spec.target(), h.pid(), why);
            h.destroy();
            try {
                h.onExit().get(cfg.backendStopTimeout().toMillis(), TimeUnit.MILLISECONDS);
            } catch (TimeoutException e) {
                LOG.warn("{} {}: backend pid {} still running {} s after SIGTERM: SIGKILL", b.domain, b.spec.target(), h.pid(),
                        cfg.backendStopTimeout().toSeconds());
                h.destroyForcibly();
                try {
                    h.onExit().get(10, TimeUnit.SECONDS);
                } catch (Exception ignored) {
                    // reported below if still alive
                }
            } catch (Exception e) {
                Thread.currentThread().interrupt();
            }
        }
        synchronized (b) {
            b.state = ManagedBackend.State.STOPPED;
            b.stopped.complete(null);
        }
        deleteQuietly(Path.of(b.spec.socket()));
        if (b.control != null) {
            deleteQuietly(b.control);
        }
        StateFiles.delete(cfg.stateDir(), b.key());
        backends.remove(b.key(), b);
    }

    private void drainThenStop(ManagedBackend b) {
        long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(10);
        while (System.nanoTime() < deadline) {
            synchronized (b) {
                if (!b.draining || b.state == ManagedBackend.State.STOPPED) {
                    return; // started again in the meantime, or gone
                }
            }
            if (ProcFs.processesMentioning(b.spec.socket(), "--socket-path").isEmpty()) {
                break;
            }
            sleep(500);
        }
        synchronized (lockFor(b.domain)) {
            synchronized (b) {
                if (!b.draining) {
                    return;
                }
            }
            stop(b, "outgoing migration completed and the source QEMU is gone");
        }
    }

    private void rotate(Path log) {
        try {
            if (Files.exists(log) && Files.size(log) > cfg.logMaxBytes()) {
                rotateFiles(log, cfg.logKeep());
            }
        } catch (IOException e) {
            LOG.warn("cannot rotate {}: {}", log, e.toString());
        }
    }

    static void rotateFiles(Path log, int keep) throws IOException {
        for (int i = keep - 1; i >= 1; i--) {
            Path from = log.resolveSibling(log.getFileName() + "." + i);
            if (Files.exists(from)) {
                Files.move(from, log.resolveSibling(log.getFileName() + "." + (i + 1)), StandardCopyOption.REPLACE_EXISTING);
            }
        }
        Files.move(log, log.resolveSibling(log.getFileName() + ".1"), StandardCopyOption.REPLACE_EXISTING);
    }

    /**
     * Logs of running backends are appended to by the backend itself (so they survive a daemon
     * restart): rotate by copy + truncate when they grow past log.max-bytes.
     */
    public void rotateRunningLogs() {
        for (ManagedBackend b : backends.values()) {
            try {
                if (Files.exists(b.log) && Files.size(b.log) > cfg.logMaxBytes()) {
                    Path tmp = b.log.resolveSibling(b.log.getFileName() + ".rotating");
                    Files.copy(b.log, tmp, StandardCopyOption.REPLACE_EXISTING);
                    try (RandomAccessFile f = new RandomAccessFile(b.log.toFile(), "rw")) {
                        f.setLength(0);
                    }
                    for (int i = cfg.logKeep() - 1; i >= 1; i--) {
                        Path from = b.log.resolveSibling(b.log.getFileName() + "." + i);
                        if (Files.exists(from)) {
                            Files.move(from, b.log.resolveSibling(b.log.getFileName() + "." + (i + 1)), StandardCopyOption.REPLACE_EXISTING);
                        }
                    }
                    Files.move(tmp, b.log.resolveSibling(b.log.getFileName() + ".1"), StandardCopyOption.REPLACE_EXISTING);
                }
            } catch (IOException e) {
                LOG.warn("cannot rotate {}: {}", b.log, e.toString());
            }
        }
    }

    static String lastLogLine(Path log) {
        try {
            List<String> lines = Files.readAllLines(log, StandardCharsets.UTF_8);
            for (int i = lines.size() - 1; i >= 0; i--) {
                String l = lines.get(i).trim();
                if (!l.isEmpty() && !l.startsWith("# ")) {
                    return l;
                }
            }
        } catch (IOException e) {
            // no log
        }
        return "(no output; log " + log + ")";
    }

    private static void deleteQuietly(Path p) {
        try {
            Files.deleteIfExists(p);
        } catch (IOException ignored) {
            // best effort
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    public PluginConfig config() {
        return cfg;
    }

    /** Schedules periodic work (log rotation). */
    public void schedule(Runnable r, Duration every) {
        timer.scheduleWithFixedDelay(() -> {
            try {
                r.run();
            } catch (RuntimeException e) {
                LOG.warn("periodic task failed", e);
            }
        }, every.toMillis(), every.toMillis(), TimeUnit.MILLISECONDS);
    }

    public ObjectNode summary() {
        ObjectNode o = Json.MAPPER.createObjectNode();
        o.put("backends", backends.size());
        return o;
    }
}
