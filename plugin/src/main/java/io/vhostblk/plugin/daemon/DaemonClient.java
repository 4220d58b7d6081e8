package io.vhostblk.plugin.daemon;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/**
 * Client of the daemon's local socket: one JSON request line, one JSON response line
 * ({@code {"ok":true,...}} or {@code {"ok":false,"error":"..."}}).
 */
public final class DaemonClient {
    private final Path socket;

    public DaemonClient(Path socket) {
        this.socket = socket;
    }

    /** The daemon is not reachable (not running, socket missing, permission). */
    public static final class UnavailableException extends IOException {
        public UnavailableException(String m, Throwable cause) {
            super(m, cause);
        }
    }

    /** The daemon answered with ok=false. */
    public static final class DaemonException extends IOException {
        public DaemonException(String m) {
            super(m);
        }
    }

    public JsonNode call(ObjectNode request) throws IOException {
        SocketChannel ch;
        try {
            ch = SocketChannel.open(StandardProtocolFamily.UNIX);
            ch.connect(UnixDomainSocketAddress.of(socket));
        } catch (IOException e) {
            throw new UnavailableException("the vhostblk daemon is not reachable at " + socket + " (" + e.getMessage()
                    + "); is it running? (systemctl start vhostblk, or: vhostblk daemon)", e);
        }
        try (ch) {
            byte[] line = (Json.MAPPER.writeValueAsString(request) + "\n").getBytes(StandardCharsets.UTF_8);
            ByteBuffer b = ByteBuffer.wrap(line);
            while (b.hasRemaining()) {
                ch.write(b);
            }
            BufferedReader r = new BufferedReader(new InputStreamReader(Channels.newInputStream(ch), StandardCharsets.UTF_8));
            String resp = r.readLine();
            if (resp == null) {
                throw new DaemonException("the vhostblk daemon closed the connection without answering");
            }
            JsonNode n = Json.MAPPER.readTree(resp);
            if (!n.path("ok").asBoolean(false)) {
                throw new DaemonException(n.path("error").asText("unknown error"));
            }
            return n;
        }
    }

    public static ObjectNode request(String op) {
        return Json.MAPPER.createObjectNode().put("op", op);
    }
}
