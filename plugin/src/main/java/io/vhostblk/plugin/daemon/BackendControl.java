package io.vhostblk.plugin.daemon;

import com.fasterxml.jackson.databind.JsonNode;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * Client of a backend's control socket ({@code --control-socket PATH}): sends {@code status\n},
 * reads one JSON line such as {@code {"pid":N,"image":"...","format":"raw","socket":"...",
 * "connected":true,"connections":N,"queues":N,"uptime_s":N,"requests":N,"errors":N}}.
 */
public final class BackendControl {
    private BackendControl() {}

    /** The backend's status, or null when the socket is absent or does not answer in time. */
    public static JsonNode status(Path control, Duration timeout) {
        if (control == null || !Files.exists(control)) {
            return null;
        }
        SocketChannel ch;
        try {
            ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        } catch (IOException e) {
            return null;
        }
        CompletableFuture<JsonNode> f = CompletableFuture.supplyAsync(() -> {
            try {
                ch.connect(UnixDomainSocketAddress.of(control));
                ByteBuffer req = ByteBuffer.wrap("status\n".getBytes(StandardCharsets.US_ASCII));
                while (req.hasRemaining()) {
                    ch.write(req);
                }
                ByteBuffer buf = ByteBuffer.allocate(8192);
                while (buf.hasRemaining()) {
                    int n = ch.read(buf);
                    if (n < 0) {
                        break;
                    }
                    if (indexOfNewline(buf) >= 0) {
                        break;
                    }
                }
                String s = new String(buf.array(), 0, buf.position(), StandardCharsets.UTF_8).trim();
                int nl = s.indexOf('\n');
                return Json.MAPPER.readTree(nl >= 0 ? s.substring(0, nl) : s);
            } catch (IOException e) {
                return null;
            }
        }, r -> Thread.ofVirtual().start(r));
        try {
            return f.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
        } catch (Exception e) {
            return null;
        } finally {
            try {
                ch.close();
            } catch (IOException ignored) {
                // closing
            }
        }
    }

    private static int indexOfNewline(ByteBuffer b) {
        for (int i = 0; i < b.position(); i++) {
            if (b.get(i) == '\n') {
                return i;
            }
        }
        return -1;
    }
}
