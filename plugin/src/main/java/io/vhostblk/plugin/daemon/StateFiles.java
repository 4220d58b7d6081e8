package io.vhostblk.plugin.daemon;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/**
 * One JSON file per running backend under run.dir/state: enough for a restarted daemon to
 * recognise (pid + process start time + command line) and adopt the process.
 */
final class StateFiles {
    private static final Logger LOG = LogManager.getLogger(StateFiles.class);

    record Entry(String key, String domainKey, String socket, long pid, long startMillis, List<String> command, int restarts) {}

    private StateFiles() {}

    static Path file(Path dir, String key) {
        return dir.resolve(key.replaceAll("[^A-Za-z0-9._-]", "_") + ".json");
    }

    static void write(Path dir, ManagedBackend b) {
        ObjectNode o = Json.MAPPER.createObjectNode();
        synchronized (b) {
            o.put("key", b.key());
            o.put("domain_key", b.domain.key());
            o.put("domain", b.domain.name());
            o.put("uuid", b.domain.uuid());
            o.put("target", b.spec.target());
            o.put("socket", b.spec.socket());
            o.put("pid", b.handle.pid());
            o.put("start_millis", b.handle.info().startInstant().map(Instant::toEpochMilli).orElse(0L));
            o.put("restarts", b.restarts);
            var cmd = o.putArray("command");
            b.command.forEach(cmd::add);
        }
        Path f = file(dir, b.key());
        try {
            Path tmp = f.resolveSibling(f.getFileName() + ".tmp");
            Files.writeString(tmp, Json.MAPPER.writeValueAsString(o));
            Files.move(tmp, f, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            LOG.warn("cannot write state file {}: {}", f, e.toString());
        }
    }

    static void delete(Path dir, String key) {
        try {
            Files.deleteIfExists(file(dir, key));
        } catch (IOException e) {
            LOG.warn("cannot delete state file for {}: {}", key, e.toString());
        }
    }

    static Optional<Entry> read(Path f) {
        try {
            JsonNode n = Json.MAPPER.readTree(Files.readString(f));
            List<String> cmd = new ArrayList<>();
            n.path("command").forEach(x -> cmd.add(x.asText()));
            return Optional.of(new Entry(n.path("key").asText(), n.path("domain_key").asText(), n.path("socket").asText(),
                    n.path("pid").asLong(-1), n.path("start_millis").asLong(0), cmd, n.path("restarts").asInt(0)));
        } catch (IOException | RuntimeException e) {
            return Optional.empty();
        }
    }

    static List<Entry> list(Path dir) {
        List<Entry> out = new ArrayList<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, "*.json")) {
            for (Path p : ds) {
                read(p).ifPresent(out::add);
            }
        } catch (IOException e) {
            // empty
        }
        return out;
    }

    /** The live process of a state entry, if pid, start time and command line still match. */
    static Optional<ProcessHandle> liveProcess(Entry e) {
        Optional<ProcessHandle> h = ProcessHandle.of(e.pid());
        if (h.isEmpty() || !h.get().isAlive()) {
            return Optional.empty();
        }
        long start = h.get().info().startInstant().map(Instant::toEpochMilli).orElse(0L);
        if (e.startMillis() != 0 && start != 0 && Math.abs(start - e.startMillis()) > 1000) {
            return Optional.empty(); // pid reused
        }
        String c = ProcFs.cmdline(e.pid());
        if (c == null || !c.contains(e.socket())) {
            return Optional.empty();
        }
        return h;
    }

    static int restarts(Path dir, ManagedBackend b) {
        return read(file(dir, b.key())).map(Entry::restarts).orElse(0);
    }

    /**
     * The process to adopt for {@code b}. A live process started with other arguments (the disk's
     * settings changed) is stopped instead, so that a fresh one can take the socket.
     */
    static Optional<ProcessHandle> adoptable(Path dir, ManagedBackend b) {
        Optional<Entry> e = read(file(dir, b.key()));
        if (e.isEmpty()) {
            return Optional.empty();
        }
        Optional<ProcessHandle> h = liveProcess(e.get());
        if (h.isEmpty()) {
            return Optional.empty();
        }
        if (!e.get().command().equals(b.command)) {
            LOG.warn("{}: backend pid {} runs with other settings; replacing it", b.key(), h.get().pid());
            h.get().destroy();
            try {
                h.get().onExit().get(20, TimeUnit.SECONDS);
            } catch (Exception ex) {
                h.get().destroyForcibly();
            }
            return Optional.empty();
        }
        return h;
    }
}
