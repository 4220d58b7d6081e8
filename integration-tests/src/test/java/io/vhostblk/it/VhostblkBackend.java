package io.vhostblk.it;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The project's backend, started through its launcher:
 * {@code <repo>/bin/vhostblk-backend --socket-path SOCK --blk-file FILE --num-queues N [extra...]}.
 */
public final class VhostblkBackend extends AbstractBackendProcess {
    private final Path file;
    private final int numQueues;
    private final List<String> extraArgs;

    public VhostblkBackend(Path socket, Path file, int numQueues, List<String> extraArgs, Path log) {
        super(socket, log, Duration.ofSeconds(60));
        this.file = file;
        this.numQueues = numQueues;
        this.extraArgs = List.copyOf(extraArgs);
    }

    public static Path launcher() {
        return ItPaths.repoRoot().resolve("bin").resolve("vhostblk-backend");
    }

    public static Path jar() {
        return ItPaths.repoRoot().resolve("backend").resolve("target").resolve("vhostblk-backend.jar");
    }

    @Override
    protected List<String> command() {
        Path l = launcher();
        if (!Files.isExecutable(l)) {
            throw new AssertionError("backend launcher " + l + " is missing or not executable");
        }
        List<String> cmd = new ArrayList<>(List.of(l.toString(),
                "--socket-path", socket.toString(),
                "--blk-file", file.toString(),
                "--num-queues", Integer.toString(numQueues)));
        cmd.addAll(extraArgs);
        return cmd;
    }

    @Override
    protected void environment(Map<String, String> env) {
        // the launcher needs a JDK 25: give it the one running the tests unless told otherwise
        env.putIfAbsent("JAVA_HOME", System.getProperty("java.home"));
    }
}
