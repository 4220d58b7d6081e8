package io.vhostblk.vhostuser;

import io.vhostblk.linux.UnixSocket;

/**
 * Reads and writes {@link Message}s on a connected vhost-user socket. Used by the backend's
 * control thread and by the frontend driver alike.
 */
public final class MessageChannel implements AutoCloseable {
    private final UnixSocket socket;

    public MessageChannel(UnixSocket socket) {
        this.socket = socket;
    }

    public UnixSocket socket() {
        return socket;
    }

    /**
     * Reads the next message into {@code m}. Returns false on a clean end of stream. A header
     * announcing more than {@link Message#MAX_PAYLOAD} bytes is a protocol error (we cannot
     * resynchronise the stream after it, so the caller closes the connection).
     */
    public boolean read(Message m) {
        m.closeFds();
        int n = socket.receive(m.buf, Message.HEADER_SIZE, m.fds);
        if (n < 0) {
            return false;
        }
        m.fdCount = n;
        int size = m.size();
        if (size < 0 || size > Message.MAX_PAYLOAD) {
            throw new ProtocolException(Request.name(m.request()) + " announces a payload of " + Integer.toUnsignedString(size)
                    + " bytes (at most " + Message.MAX_PAYLOAD + ")");
        }
        if (size > 0) {
            int[] extra = new int[8];
            int more = socket.receive(m.buf.asSlice(Message.HEADER_SIZE), size, extra);
            if (more < 0) {
                throw new ProtocolException("connection closed inside " + Request.name(m.request()));
            }
            for (int i = 0; i < more; i++) {
                if (m.fdCount < m.fds.length) {
                    m.fds[m.fdCount++] = extra[i];
                } else {
                    io.vhostblk.linux.Libc.closeQuietly(extra[i]);
                }
            }
        }
        return true;
    }

    /** Sends {@code m} as built with {@link Message#begin} (header, payload and attached fds). */
    public void write(Message m) {
        socket.send(m.buf, Message.HEADER_SIZE + m.size(), m.fds, m.fdCount);
        m.fdCount = 0;
    }

    @Override
    public void close() {
        socket.close();
    }
}
