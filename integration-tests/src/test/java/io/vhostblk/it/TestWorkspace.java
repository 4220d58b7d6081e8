package io.vhostblk.it;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.TestInfo;

/**
 * Per-test directories: logs and the disk image under target/it-work/&lt;class&gt;/&lt;test&gt;/
 * (kept after the run), the vhost-user socket in a short directory under /tmp (removed).
 */
public final class TestWorkspace implements AutoCloseable {
    private final Path dir;
    private final Path socketDir;

    private TestWorkspace(Path dir, Path socketDir) {
        this.dir = dir;
        this.socketDir = socketDir;
    }

    public static TestWorkspace create(TestInfo info) {
        String cls = info.getTestClass().map(Class::getSimpleName).orElse("test");
        String method = info.getTestMethod().map(java.lang.reflect.Method::getName).orElse("run");
        String display = info.getDisplayName();
        String name = display.startsWith(method) ? method : method + "-" + display;
        return create(cls + "/" + ItPaths.sanitize(name));
    }

    public static TestWorkspace create(String relativeName) {
        return new TestWorkspace(ItPaths.workDir(relativeName), ItPaths.shortTempDir());
    }

    public Path dir() {
        return dir;
    }

    public Path socket() {
        return socketDir.resolve("vub.sock");
    }

    public Path image() {
        return dir.resolve("disk.raw");
    }

    public Path file(String name) {
        return dir.resolve(name);
    }

    /** Removes the disk image (call at the end of a passing test; a failing one keeps it). */
    public void deleteImage() {
        try {
            Files.deleteIfExists(image());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Override
    public void close() {
        try {
            ItPaths.deleteRecursively(socketDir);
        } catch (IOException ignored) {
            // best effort
        }
    }
}
