package io.vhostblk.it;

import java.nio.file.Path;
import java.time.Duration;

/** A vhost-user-blk backend process serving one disk on a Unix socket. */
public interface BackendProcess extends AutoCloseable {

    /** Starts the process and waits until its socket accepts connections. */
    void start();

    Path socket();

    Path log();

    boolean isAlive();

    /** SIGTERM, then SIGKILL after {@code grace}; returns the exit code (128+signal if killed). */
    int stop(Duration grace);

    default int stop() {
        return stop(Duration.ofSeconds(20));
    }

    /** Last lines of the process log. */
    String logTail(int lines);

    /** Stops the process if it is still running. */
    @Override
    void close();
}
