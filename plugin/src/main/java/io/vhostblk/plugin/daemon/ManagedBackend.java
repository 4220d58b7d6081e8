package io.vhostblk.plugin.daemon;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.vhostblk.plugin.xml.DiskSpec;

import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ScheduledFuture;

/** One backend process the daemon owns: the disk it serves, its process and its history. */
public final class ManagedBackend {
    public enum State { STARTING, RUNNING, BACKOFF, STOPPING, STOPPED, FAILED }

    final DomainRef domain;
    final DiskSpec spec;
    final Path log;
    final Path control;
    final List<String> command;

    // guarded by "this"
    State state = State.STARTING;
    ProcessHandle handle;
    Process process;
    long generation;
    Instant startedAt;
    int restarts;
    int rapidFailures;
    Integer lastExit;
    String lastError;
    boolean adopted;
    Instant nextRetry;
    ScheduledFuture<?> pendingRestart;
    CompletableFuture<Void> stopped = new CompletableFuture<>();
    /** released with reason "migrated": stop once no QEMU uses the socket */
    boolean draining;

    ManagedBackend(DomainRef domain, DiskSpec spec, Path log, Path control, List<String> command) {
        this.domain = domain;
        this.spec = spec;
        this.log = log;
        this.control = control;
        this.command = List.copyOf(command);
    }

    public String key() {
        return key(domain, spec.target());
    }

    static String key(DomainRef d, String target) {
        return d.key() + "/" + target;
    }

    public DomainRef domain() {
        return domain;
    }

    public DiskSpec spec() {
        return spec;
    }

    public synchronized State state() {
        return state;
    }

    synchronized int rapidFailuresForTest() {
        return rapidFailures;
    }

    public synchronized long pid() {
        return handle == null ? -1 : handle.pid();
    }

    /** Status for {@code vhostblk status}: what the daemon knows plus the backend's own counters. */
    public ObjectNode toJson(JsonNode counters) {
        ObjectNode o = Json.MAPPER.createObjectNode();
        synchronized (this) {
            o.put("domain", domain.name());
            o.put("uuid", domain.uuid());
            o.put("target", spec.target());
            o.put("image", spec.image());
            o.put("format", spec.format());
            o.put("socket", spec.socket());
            if (handle != null && handle.isAlive()) {
                o.put("pid", handle.pid());
            } else {
                o.putNull("pid");
            }
            o.put("state", (draining && state == State.RUNNING ? "draining" : state.name().toLowerCase()));
            o.put("queues", spec.queues());
            o.put("read_only", spec.readOnly());
            if (startedAt != null && state == State.RUNNING) {
                o.put("uptime_s", Duration.between(startedAt, Instant.now()).toSeconds());
            } else {
                o.putNull("uptime_s");
            }
            o.put("restarts", restarts);
            o.put("adopted", adopted);
            if (lastExit != null) {
                o.put("last_exit", lastExit);
            }
            if (lastError != null) {
                o.put("last_error", lastError);
            }
            if (nextRetry != null && state == State.BACKOFF) {
                o.put("next_retry_s", Math.max(0, Duration.between(Instant.now(), nextRetry).toMillis()) / 1000.0);
            }
            o.put("log", log.toString());
        }
        if (counters != null) {
            o.set("backend", counters);
            for (String k : List.of("connected", "connections", "requests", "errors")) {
                if (counters.has(k)) {
                    o.set(k, counters.get(k));
                }
            }
        }
        return o;
    }
}
