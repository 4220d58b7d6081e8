package io.vhostblk.server;

import io.vhostblk.blk.BlkDevice;
import io.vhostblk.image.BlockImage;
import io.vhostblk.image.CacheMode;
import io.vhostblk.image.RawImage;
import io.vhostblk.image.qcow2.Options;
import io.vhostblk.image.qcow2.Qcow2Image;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/** The backend server running on a thread of the test JVM, serving a temp raw file on a temp socket. */
public final class InProcessBackend implements AutoCloseable {
    final Path image;
    final Path socket;
    final BackendServer server;
    /** File offset of guest offset 0 (0 for raw images). */
    final long hostShift;
    final Kind kind;
    private final BlockImage raw;
    private final Thread thread;
    private volatile Throwable failure;

    private InProcessBackend(Path image, Path socket, BackendServer server, BlockImage raw, long hostShift, Kind kind) {
        this.kind = kind;
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
    public static InProcessBackend start(Path dir, long size, String engine, CacheMode cache, int queues, int workers,
                                  boolean readOnly, String serial, long pollUs) throws IOException {
        return start(dir, size, engine, cache, queues, workers, readOnly, serial, pollUs, Kind.RAW);
    }

    /** The image behind the device. */
    enum Kind {
        RAW,
        /** A {@link ShiftedImage}: a mapped image served through the image engine. */
        SHIFTED,
        /** A qcow2 overlay (created by qemu-img) over a sparse raw backing file. */
        QCOW2
    }

    static InProcessBackend start(Path dir, long size, String engine, CacheMode cache, int queues, int workers,
                                  boolean readOnly, String serial, long pollUs, Kind kind) throws IOException {
        Path img = dir.resolve(kind == Kind.QCOW2 ? "disk.qcow2" : "disk.raw");
        long shift = kind == Kind.SHIFTED ? ShiftedImage.HEADER : 0;
        if (kind == Kind.QCOW2) {
            Path base = dir.resolve("base.raw");
            try (RandomAccessFile f = new RandomAccessFile(base.toFile(), "rw")) {
                f.setLength(size);
            }
            run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "backing_file=base.raw,backing_fmt=raw,cluster_size=65536",
                    img.toString(), Long.toString(size));
        } else {
            try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
                f.setLength(size + shift);
            }
        }
        Path sock = dir.resolve("vhost.sock");
        BackendConfig cfg = new BackendConfig(sock.toString(), -1, img.toString(), "raw", readOnly, queues, workers, 1024,
                serial, engine, cache, pollUs, 4, false, null, 4L << 20, 1L << 20);
        BlockImage raw = switch (kind) {
            case SHIFTED -> new ShiftedImage(img.toString(), size, readOnly);
            case QCOW2 -> Qcow2Image.open(img.toString(), readOnly, Options.defaults().withCache(cache));
            case RAW -> RawImage.open(img.toString(), readOnly, cache);
        };
        BackendServer server = new BackendServer(cfg, new BlkDevice(raw, queues, serial));
        return new InProcessBackend(img, sock, server, raw, shift, kind);
    }

    /**
     * What the guest sees at [offset, offset+len), read outside the backend: the file itself for
     * raw images, QEMU's own qcow2 driver ({@code qemu-img convert -U}) for qcow2.
     */
    byte[] guestView(long offset, int len) throws IOException {
        Path file = image;
        long at = hostShift + offset;
        if (kind == Kind.QCOW2) {
            file = image.resolveSibling("view.raw");
            Files.deleteIfExists(file);
            run("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", image.toString(), file.toString());
            at = offset;
        }
        byte[] b = new byte[len];
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "r")) {
            f.seek(at);
            f.readFully(b);
        }
        return b;
    }

    static String run(String... cmd) throws IOException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        try {
            if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
                throw new IOException(String.join(" ", cmd) + " failed: " + out);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException(e);
        }
        return out;
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
