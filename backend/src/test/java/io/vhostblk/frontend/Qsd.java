package io.vhostblk.frontend;

import org.junit.jupiter.api.Assumptions;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * qemu-storage-daemon serving a raw file as a vhost-user-blk export, for tests. Tests using it
 * are skipped (JUnit assumption) when the binary is not installed.
 */
final class Qsd implements AutoCloseable {
    static final String BINARY = System.getProperty("vhostblk.qsd", "/usr/bin/qemu-storage-daemon");

    final Path image;
    final Path socket;
    final Path log;
    private final Process process;

    private Qsd(Path image, Path socket, Path log, Process process) {
        this.image = image;
        this.socket = socket;
        this.log = log;
        this.process = process;
    }

    static void assumeInstalled() {
        Assumptions.assumeTrue(Files.isExecutable(Path.of(BINARY)), BINARY + " is not installed");
    }

    /** A sparse raw image of {@code size} bytes in {@code dir}, exported writable with {@code queues} queues. */
    static Qsd start(Path dir, long size, int queues, String extraBlockdevOptions) throws IOException, InterruptedException {
        assumeInstalled();
        Path image = dir.resolve("disk.raw");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(size);
        }
        return start(image, dir.resolve("qsd.sock"), queues, extraBlockdevOptions);
    }

    static Qsd start(Path image, Path socket, int queues, String extraBlockdevOptions) throws IOException, InterruptedException {
        assumeInstalled();
        Path log = socket.resolveSibling(socket.getFileName() + ".log");
        List<String> cmd = new ArrayList<>(List.of(BINARY,
                "--blockdev", "driver=file,node-name=f0,filename=" + image + (extraBlockdevOptions.isEmpty() ? "" : "," + extraBlockdevOptions),
                "--export", "type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path=" + socket
                        + ",writable=on,num-queues=" + queues));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!Files.exists(socket)) {
            if (!p.isAlive()) {
                throw new IllegalStateException("qemu-storage-daemon exited with " + p.exitValue() + ": " + Files.readString(log));
            }
            if (System.nanoTime() > deadline) {
                p.destroyForcibly();
                throw new IllegalStateException("qemu-storage-daemon did not create " + socket + ": " + Files.readString(log));
            }
            Thread.sleep(10);
        }
        return new Qsd(image, socket, log, p);
    }

    String socketPath() {
        return socket.toString();
    }

    boolean alive() {
        return process.isAlive();
    }

    String logText() {
        try {
            return Files.readString(log);
        } catch (IOException e) {
            return "(no log: " + e + ")";
        }
    }

    @Override
    public void close() throws InterruptedException {
        process.destroy();
        if (!process.waitFor(10, TimeUnit.SECONDS)) {
            process.destroyForcibly();
            process.waitFor(10, TimeUnit.SECONDS);
        }
    }
}
