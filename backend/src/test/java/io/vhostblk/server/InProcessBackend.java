package io.vhostblk.server;

import io.vhostblk.blk.BlkDevice;
import io.vhostblk.image.BlockImage;
import io.vhostblk.image.CacheMode;
import io.vhostblk.image.RawImage;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/** The backend server running on a thread of the test JVM, serving a temp raw file on a temp socket. */
final class InProcessBackend implements AutoCloseable {
    final Path image;
    final Path socket;
    final BackendServer server;
    /** File offset of guest offset 0 (0 for raw images). */
    final long hostShift;
    private final BlockImage raw;
    private final Thread thread;
    private volatile Throwable failure;

    private InProcessBackend(Path image, Path socket, BackendServer server, BlockImage raw, long hostShift) {
        this.hostShift = hostShift;
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
    static InProcessBackend start(Path dir, long size, String engine, CacheMode cache, int queues, int workers,
                                  boolean readOnly, String serial, long pollUs) throws IOException {
        return start(dir, size, engine, cache, queues, workers, readOnly, serial, pollUs, false);
    }

    /** With {@code shifted}, the image is a {@link ShiftedImage} served through the image engine. */
    static InProcessBackend start(Path dir, long size, String engine, CacheMode cache, int queues, int workers,
                                  boolean readOnly, String serial, long pollUs, boolean shifted) throws IOException {
        Path img = dir.resolve("disk.raw");
        long shift = shifted ? ShiftedImage.HEADER : 0;
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
            f.setLength(size + shift);
        }
        Path sock = dir.resolve("vhost.sock");
        BackendConfig cfg = new BackendConfig(sock.toString(), -1, img.toString(), "raw", readOnly, queues, workers, 1024,
                serial, engine, cache, pollUs, 4, false, null);
        BlockImage raw = shifted ? new ShiftedImage(img.toString(), size, readOnly) : RawImage.open(img.toString(), readOnly, cache);
        BackendServer server = new BackendServer(cfg, new BlkDevice(raw, queues, serial));
        return new InProcessBackend(img, sock, server, raw, shift);
    }

    String socketPath() {
        return socket.toString();
    }

    boolean alive() {
        return thread.isAlive() && failure == null;
    }

    Throwable failure() {
        return failure;
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
