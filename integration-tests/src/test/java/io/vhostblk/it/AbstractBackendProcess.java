package io.vhostblk.it;

import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/** Starts a command, logs its output to a file, waits for its socket, stops it with SIGTERM. */
abstract class AbstractBackendProcess implements BackendProcess {
    protected final Path socket;
    protected final Path log;
    private final Duration startTimeout;
    private Process process;
    private Integer exitCode;

    protected AbstractBackendProcess(Path socket, Path log, Duration startTimeout) {
        this.socket = socket;
        this.log = log;
        this.startTimeout = startTimeout;
    }

    protected abstract List<String> command();

    protected void environment(Map<String, String> env) {}

    @Override
    public Path socket() {
        return socket;
    }

    @Override
    public Path log() {
        return log;
    }

    @Override
    public synchronized void start() {
        if (process != null) {
            throw new IllegalStateException("already started");
        }
        List<String> cmd = command();
        try {
            Files.createDirectories(log.toAbsolutePath().getParent());
            Files.deleteIfExists(socket);
            Files.writeString(log, "# " + String.join(" ", cmd) + "\n", StandardCharsets.UTF_8);
            ProcessBuilder pb = new ProcessBuilder(cmd)
                    .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")))
                    .redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()));
            environment(pb.environment());
            process = ChildProcesses.register(pb.start());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot start " + cmd, e);
        }
        long deadline = System.nanoTime() + startTimeout.toNanos();
        while (true) {
            if (!process.isAlive()) {
                exitCode = process.exitValue();
                ChildProcesses.unregister(process);
                throw new AssertionError("backend exited with code " + exitCode + " before its socket " + socket
                        + " accepted a connection; " + describeLog());
            }
            if (Files.exists(socket) && canConnect()) {
                return;
            }
            if (System.nanoTime() > deadline) {
                stop(Duration.ofSeconds(5));
                throw new AssertionError("backend socket " + socket + " did not accept a connection within "
                        + startTimeout.toSeconds() + " s; " + describeLog());
            }
            sleep(50);
        }
    }

    private boolean canConnect() {
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(socket));
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    @Override
    public synchronized boolean isAlive() {
        return process != null && process.isAlive();
    }

    /** The process id, or -1 if not started. */
    public synchronized long pid() {
        return process == null ? -1 : process.pid();
    }

    @Override
    public synchronized int stop(Duration grace) {
        if (process == null) {
            throw new IllegalStateException("not started");
        }
        if (exitCode != null) {
            return exitCode;
        }
        List<ProcessHandle> children = process.descendants().toList();
        if (process.isAlive()) {
            process.destroy(); // SIGTERM
        }
        try {
            if (!process.waitFor(grace.toMillis(), TimeUnit.MILLISECONDS)) {
                appendToLog("# harness: no exit " + grace.toSeconds() + " s after SIGTERM, sending SIGKILL");
                process.destroyForcibly();
                process.waitFor(10, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
        }
        for (ProcessHandle c : children) {
            if (c.isAlive()) {
                appendToLog("# harness: killing leftover child process " + c.pid());
                c.destroyForcibly();
            }
        }
        exitCode = process.isAlive() ? -1 : process.exitValue();
        if (exitCode != -1) {
            ChildProcesses.unregister(process);
        }
        appendToLog("# harness: backend exit code " + exitCode);
        return exitCode;
    }

    @Override
    public void close() {
        synchronized (this) {
            if (process == null || exitCode != null) {
                return;
            }
        }
        stop(Duration.ofSeconds(10));
    }

    @Override
    public String logTail(int lines) {
        try {
            List<String> all = Files.readAllLines(log, StandardCharsets.UTF_8);
            return String.join("\n", all.subList(Math.max(0, all.size() - lines), all.size()));
        } catch (IOException e) {
            return "(cannot read " + log + ": " + e + ")";
        }
    }

    protected String describeLog() {
        return "log " + log + " (last lines):\n" + logTail(40);
    }

    private void appendToLog(String line) {
        try {
            Files.writeString(log, line + "\n", StandardCharsets.UTF_8, java.nio.file.StandardOpenOption.APPEND);
        } catch (IOException ignored) {
            // best effort
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
    }
}
