package io.vhostblk.server;

import io.vhostblk.blk.BlkDevice;
import io.vhostblk.linux.Libc;
import io.vhostblk.linux.UnixSocket;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

/**
 * Listens on the vhost-user socket and serves one frontend at a time; after a disconnect it
 * accepts the next connection (QEMU reconnect, guest reboot, migration) with fresh state.
 * With {@code --fd} it serves that one connection and returns.
 */
public final class BackendServer {
    private static final Logger LOG = LogManager.getLogger(BackendServer.class);

    private final BackendConfig config;
    private final BlkDevice device;
    private final int listenFd;
    private volatile boolean stopping;
    private volatile Connection current;
    private volatile long connections;
    private volatile long pastRequests;
    private volatile long pastErrors;
    private final long startNanos = System.nanoTime();

    public BackendServer(BackendConfig config, BlkDevice device) {
        this.config = config;
        this.device = device;
        if (config.socketPath() != null) {
            this.listenFd = UnixSocket.listen(config.socketPath(), 1);
            Libc.chmod(config.socketPath(), 0660);
        } else {
            this.listenFd = -1;
        }
    }

    public long connections() {
        return connections;
    }

    /** Serves until {@link #stop()}; returns normally. */
    public void run() {
        if (listenFd < 0) {
            serve(UnixSocket.adopt(config.fd()));
            return;
        }
        LOG.info("listening on {}", config.socketPath());
        while (!stopping) {
            UnixSocket s;
            try {
                s = UnixSocket.accept(listenFd);
            } catch (RuntimeException e) {
                if (stopping) {
                    break;
                }
                throw e;
            }
            if (stopping) {
                s.close();
                break;
            }
            serve(s);
        }
    }

    private void serve(UnixSocket s) {
        connections++;
        LOG.info("frontend connected (connection #{})", connections);
        Connection c;
        try {
            c = new Connection(config, device, s);
        } catch (RuntimeException e) {
            // E.g. io_uring setup refused (RLIMIT_MEMLOCK, ENOMEM): drop this frontend, keep listening.
            LOG.error("cannot set up a session for the frontend: {}", e.getMessage());
            s.close();
            return;
        }
        current = c;
        if (stopping) {
            c.interrupt();
        }
        c.serve();
        pastRequests += c.requests();
        pastErrors += c.errors();
        current = null;
    }

    /**
     * Stops taking requests: wakes the accept or the connection, whose teardown finishes the
     * requests in flight and flushes the image.
     */
    public void stop() {
        stopping = true;
        Connection c = current;
        if (c != null) {
            c.interrupt();
        }
        if (listenFd >= 0) {
            // shutdown(2) on a listening socket wakes a blocked accept with EINVAL.
            io.vhostblk.linux.UnixSocket.shutdownListener(listenFd);
        }
    }

    /** What the control socket reports. */
    public io.vhostblk.control.BackendStatus status() {
        Connection c = current;
        long req = pastRequests + (c == null ? 0 : c.requests());
        long err = pastErrors + (c == null ? 0 : c.errors());
        return new io.vhostblk.control.BackendStatus(ProcessHandle.current().pid(), config.blkFile(), config.format(),
                config.socketPath(), c != null, connections, c == null ? 0 : c.startedQueues(),
                (System.nanoTime() - startNanos) / 1_000_000_000L, req, err);
    }

    /** Releases the socket (and its path). */
    public void close() {
        if (listenFd >= 0) {
            Libc.closeQuietly(listenFd);
            Libc.unlinkIfExists(config.socketPath());
        }
    }
}
