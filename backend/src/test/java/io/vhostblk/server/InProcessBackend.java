package io.vhostblk.server;

import io.vhostblk.blk.BlkDevice;
import io.vhostblk.image.CacheMode;
import io.vhostblk.image.RawImage;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/** The backend server running on a thread of the test JVM, serving a temp raw file on a temp socket. */
public final class InProcessBackend implements AutoCloseable {
    final Path image;
    final Path socket;
    final BackendServer server;
    private final RawImage raw;
    private final Thread thread;
    private volatile Throwable failure;

    private InProcessBackend(Path image, Path socket, BackendServer server, RawImage raw) {
        this.image = image;
        this.socket = socket;
        this.server = server;
        this.raw = raw;
        this.thread = Thread.ofPlatform().name("backend-under-test").start(() -> {
            try {
                server.run();
            } catch (Throwable t) {
                failure = t;
            }
        });
    }

    /** Starts a backend; {@code size} bytes of image, options as on the command line. */
    public static InProcessBackend start(Path dir, long size, String engine, CacheMode cache, int queues, int workers,
                                  boolean readOnly, String serial, long pollUs) throws IOException {
        Path img = dir.resolve("disk.raw");
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
            f.setLength(size);
        }
        Path sock = dir.resolve("vhost.sock");
        BackendConfig cfg = new BackendConfig(sock.toString(), -1, img.toString(), "raw", readOnly, queues, workers, 1024,
                serial, engine, cache, pollUs, 4, false, null);
        RawImage raw = RawImage.open(img.toString(), readOnly, cache);
        BackendServer server = new BackendServer(cfg, new BlkDevice(raw, queues, serial));
        return new InProcessBackend(img, sock, server, raw);
    }

    public String socketPath() {
        return socket.toString();
    }

    public boolean alive() {
        return thread.isAlive() && failure == null;
    }

    public Throwable failure() {
        return failure;
    }

    /** Whether the backend is in a session (a frontend connected and not yet torn down). */
    public boolean inSession() {
        return server.status().connected();
    }

    /** Connections accepted so far. */
    public long connections() {
        return server.connections();
    }

    /**
     * Waits until the backend has torn down its session (teardown follows the frontend's close)
     * and is back in accept; false if it is still in a session after {@code timeoutMs}.
     */
    public boolean awaitIdle(long timeoutMs) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        while (inSession()) {
            if (System.nanoTime() > deadline) {
                return false;
            }
            Thread.sleep(1);
        }
        return true;
    }

    @Override
    public void close() throws InterruptedException {
        server.stop();
        thread.join(TimeUnit.SECONDS.toMillis(30));
        server.close();
        raw.close();
        if (thread.isAlive()) {
            throw new AssertionError("backend did not stop within 30 s");
        }
        if (failure != null) {
            throw new AssertionError("backend thread failed", failure);
        }
    }
}
