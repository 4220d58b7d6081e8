package io.vhostblk.plugin.daemon;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.vhostblk.plugin.xml.DiskSpec;
import io.vhostblk.plugin.xml.DomainDisks;
import io.vhostblk.plugin.xml.RewriteException;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.function.Supplier;

/**
 * The daemon's local socket (run.dir/daemon.sock, root only): one JSON request line per
 * connection, one JSON response line. Used by the libvirt hook and the CLI.
 */
public final class ControlServer implements AutoCloseable {
    private static final Logger LOG = LogManager.getLogger(ControlServer.class);
    private final Path path;
    private final Supervisor supervisor;
    private final Supplier<Boolean> libvirtConnected;
    private ServerSocketChannel server;
    private Thread acceptor;

    public ControlServer(Path path, Supervisor supervisor, Supplier<Boolean> libvirtConnected) {
        this.path = path;
        this.supervisor = supervisor;
        this.libvirtConnected = libvirtConnected;
    }

    public void start() throws IOException {
        Files.deleteIfExists(path);
        server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(path));
        Files.setPosixFilePermissions(path, PosixFilePermissions.fromString("rw-------"));
        acceptor = Thread.ofPlatform().name("control-accept").daemon(true).start(this::acceptLoop);
        LOG.info("listening on {}", path);
    }

    private void acceptLoop() {
        while (server.isOpen()) {
            try {
                SocketChannel ch = server.accept();
                Thread.ofVirtual().name("control").start(() -> serve(ch));
            } catch (IOException e) {
                if (server.isOpen()) {
                    LOG.warn("accept failed: {}", e.toString());
                }
            }
        }
    }

    private void serve(SocketChannel ch) {
        try (ch) {
            BufferedReader r = new BufferedReader(new InputStreamReader(Channels.newInputStream(ch), StandardCharsets.UTF_8));
            String line = r.readLine();
            if (line == null) {
                return;
            }
            ObjectNode resp;
            try {
                resp = handle(Json.MAPPER.readTree(line));
            } catch (IOException | RewriteException | IllegalArgumentException e) {
                resp = Json.MAPPER.createObjectNode().put("ok", false).put("error", e.getMessage());
            } catch (RuntimeException e) {
                LOG.error("request failed", e);
                resp = Json.MAPPER.createObjectNode().put("ok", false).put("error", e.toString());
            }
            ByteBuffer b = ByteBuffer.wrap((Json.MAPPER.writeValueAsString(resp) + "\n").getBytes(StandardCharsets.UTF_8));
            while (b.hasRemaining()) {
                ch.write(b);
            }
        } catch (IOException e) {
            LOG.debug("control connection: {}", e.toString());
        }
    }

    ObjectNode handle(JsonNode req) throws IOException {
        String op = req.path("op").asText("");
        ObjectNode ok = Json.MAPPER.createObjectNode().put("ok", true);
        switch (op) {
            case "ping" -> {
                ok.put("pid", ProcessHandle.current().pid());
                ok.put("backends", supervisor.all().size());
                ok.put("libvirt_connected", libvirtConnected.get());
            }
            case "prepare", "reconnect" -> {
                DomainDisks dd = DomainDisks.parse(req.path("xml").asText());
                DomainRef d = new DomainRef(dd.name(), dd.uuid());
                LOG.info("{} {}: {} disk(s) {}", op, d, dd.disks().size(), dd.disks().stream().map(DiskSpec::target).toList());
                if (!dd.disks().isEmpty()) {
                    if ("reconnect".equals(op)) {
                        supervisor.adopt(d, dd.disks());
                    } else {
                        supervisor.ensure(d, dd.disks());
                    }
                }
                var a = ok.putArray("disks");
                dd.disks().forEach(s -> a.add(s.target()));
            }
            case "release" -> {
                DomainRef d = domainOf(req);
                String reason = req.path("reason").asText("-");
                LOG.info("release {} (reason {})", d, reason);
                supervisor.release(d, reason);
            }
            case "ensure-disk" -> {
                DomainRef d = domainOf(req);
                DiskSpec s = Json.MAPPER.treeToValue(req.path("disk"), DiskSpec.class);
                LOG.info("ensure-disk {} {} ({})", d, s.target(), s.image());
                supervisor.ensure(d, List.of(s));
            }
            case "stop-disk" -> {
                DomainRef d = domainOf(req);
                ok.put("stopped", supervisor.stopDisk(d, req.path("target").asText()));
            }
            case "status" -> {
                ok.set("backends", supervisor.statusJson());
                ok.put("libvirt_connected", libvirtConnected.get());
                ok.put("daemon_pid", ProcessHandle.current().pid());
            }
            default -> throw new IllegalArgumentException("unknown request '" + op + "'");
        }
        return ok;
    }

    private static DomainRef domainOf(JsonNode req) {
        if (req.hasNonNull("xml")) {
            DomainDisks dd = DomainDisks.parse(req.path("xml").asText());
            return new DomainRef(dd.name(), dd.uuid());
        }
        String name = req.path("domain").asText(null);
        String uuid = req.path("uuid").asText(null);
        if (name == null && uuid == null) {
            throw new IllegalArgumentException("request without domain");
        }
        return new DomainRef(name, uuid);
    }

    @Override
    public void close() throws IOException {
        if (server != null) {
            server.close();
        }
        Files.deleteIfExists(path);
    }
}
