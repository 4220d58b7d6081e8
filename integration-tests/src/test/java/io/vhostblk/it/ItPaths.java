package io.vhostblk.it;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Where things are: the integration-tests module, the repository root, target/. */
public final class ItPaths {
    private ItPaths() {}

    /** The integration-tests module directory (surefire passes it; falls back to the working dir). */
    public static Path moduleDir() {
        String p = System.getProperty("vhostblk.it.moduleDir");
        if (p == null || p.isBlank()) {
            p = System.getProperty("basedir", System.getProperty("user.dir"));
        }
        Path dir = Path.of(p).toAbsolutePath().normalize();
        if (!Files.isDirectory(dir.resolve("guest"))) {
            // started from the repository root (e.g. an IDE)
            Path alt = dir.resolve("integration-tests");
            if (Files.isDirectory(alt.resolve("guest"))) {
                return alt;
            }
        }
        return dir;
    }

    /** The repository root: the module directory's parent. */
    public static Path repoRoot() {
        return moduleDir().getParent();
    }

    public static Path targetDir() {
        return moduleDir().resolve("target");
    }

    /** A fresh directory target/it-work/NAME for one test (logs, disk images); '/' nests. */
    public static Path workDir(String name) {
        Path d = targetDir().resolve("it-work");
        for (String part : name.split("/")) {
            if (!part.isEmpty()) {
                d = d.resolve(sanitize(part));
            }
        }
        try {
            if (Files.exists(d)) {
                deleteRecursively(d);
            }
            return Files.createDirectories(d);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Unix socket paths are limited to 107 bytes: sockets live in a short directory under /tmp. */
    public static Path shortTempDir() {
        try {
            return Files.createTempDirectory(Path.of("/tmp"), "vhostblk-it-");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    public static String sanitize(String s) {
        String r = s.replaceAll("[^A-Za-z0-9_.=-]+", "_").replaceAll("_+", "_");
        r = r.replaceAll("^_|_$", "");
        return r.length() > 100 ? r.substring(0, 100) : r;
    }

    public static void deleteRecursively(Path p) throws IOException {
        if (!Files.exists(p, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        try (var s = Files.walk(p)) {
            for (Path q : s.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(q);
            }
        }
    }
}
