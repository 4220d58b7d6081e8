package io.vhostblk.control;

import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.function.Supplier;

/**
 * The backend's local control socket: a client writes one command line and reads one JSON
 * line back. Commands: {@code status}. Plain JDK UNIX-domain channels suffice here (no file
 * descriptors travel); the thread is a daemon and never touches the data path.
 */
public final class ControlServer implements AutoCloseable {
    private static final Logger LOG = LogManager.getLogger(ControlServer.class);
    private static final int MAX_LINE = 256;

    private final Path path;
    private final ServerSocketChannel server;
    private final Supplier<BackendStatus> status;
    private final Thread thread;
    private volatile boolean closed;

    public ControlServer(Path path, Supplier<BackendStatus> status) throws IOException {
        this.path = path;
        this.status = status;
        Files.deleteIfExists(path);
        this.server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(path));
        Files.setPosixFilePermissions(path, PosixFilePermissions.fromString("rw-rw----"));
        this.thread = Thread.ofPlatform().daemon().name("vhostblk-control").start(this::run);
    }

    private void run() {
        while (!closed) {
            try (SocketChannel c = server.accept()) {
                answer(c);
            } catch (IOException e) {
                if (!closed) {
                    LOG.warn("control socket: {}", e.getMessage());
                }
            }
        }
    }

    private void answer(SocketChannel c) throws IOException {
        ByteBuffer in = ByteBuffer.allocate(MAX_LINE);
        while (in.hasRemaining()) {
            if (c.read(in) < 0) {
                break;
            }
            if (new String(in.array(), 0, in.position(), StandardCharsets.US_ASCII).indexOf('\n') >= 0) {
                break;
            }
        }
        String cmd = new String(in.array(), 0, in.position(), StandardCharsets.US_ASCII).trim();
        String reply = switch (cmd) {
            case "status" -> status.get().toJson();
            default -> "{\"error\":" + Json.quote("unknown command '" + cmd + "' (known: status)") + "}";
        };
        ByteBuffer out = ByteBuffer.wrap((reply + "\n").getBytes(StandardCharsets.UTF_8));
        while (out.hasRemaining()) {
            c.write(out);
        }
    }

    @Override
    public void close() {
        closed = true;
        try {
            server.close();
            Files.deleteIfExists(path);
        } catch (IOException e) {
            LOG.warn("closing control socket: {}", e.getMessage());
        }
        thread.interrupt();
    }
}
