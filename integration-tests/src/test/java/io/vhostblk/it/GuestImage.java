package io.vhostblk.it;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.concurrent.TimeUnit;

/**
 * The guest kernel and initramfs. The initramfs is built once per build by
 * {@code guest/build-initrd.sh} into {@code target/guest/initrd.gz} and rebuilt when the
 * script or {@code guest/init.sh} changed (their hashes are kept in {@code initrd.stamp};
 * {@code bin/demo} uses the same cache and stamp format).
 */
public record GuestImage(Path kernel, Path initrd) {

    private static GuestImage cached;

    public static synchronized GuestImage get() {
        if (cached == null) {
            cached = buildIfNeeded();
        }
        return cached;
    }

    private static GuestImage buildIfNeeded() {
        Path guestSrc = ItPaths.moduleDir().resolve("guest");
        Path script = guestSrc.resolve("build-initrd.sh");
        Path init = guestSrc.resolve("init.sh");
        Path out = ItPaths.targetDir().resolve("guest");
        Path initrd = out.resolve("initrd.gz");
        Path kernelFile = out.resolve("initrd.gz.kernel");
        Path stampFile = out.resolve("initrd.stamp");
        try {
            String stamp = sha256Hex(script) + "\n" + sha256Hex(init) + "\n";
            if (Files.isRegularFile(initrd) && Files.isRegularFile(kernelFile) && Files.isRegularFile(stampFile)
                    && Files.readString(stampFile).equals(stamp)) {
                Path kernel = Path.of(Files.readString(kernelFile).trim());
                if (Files.isReadable(kernel)) {
                    return new GuestImage(kernel, initrd);
                }
            }
            Files.createDirectories(out);
            Files.deleteIfExists(stampFile);
            Path log = out.resolve("build-initrd.log");
            long t0 = System.nanoTime();
            Process p = new ProcessBuilder("bash", script.toString(), initrd.toString())
                    .redirectErrorStream(true)
                    .redirectOutput(log.toFile())
                    .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")))
                    .start();
            if (!p.waitFor(5, TimeUnit.MINUTES)) {
                p.destroyForcibly();
                throw new AssertionError("build-initrd.sh timed out; log: " + log);
            }
            if (p.exitValue() != 0) {
                throw new AssertionError("build-initrd.sh failed (exit " + p.exitValue() + "):\n"
                        + Files.readString(log, StandardCharsets.UTF_8));
            }
            Files.writeString(stampFile, stamp);
            Path kernel = Path.of(Files.readString(kernelFile).trim());
            System.out.printf("[guest-image] built %s in %.1f s (kernel %s)%n", initrd,
                    (System.nanoTime() - t0) / 1e9, kernel);
            return new GuestImage(kernel, initrd);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted while building the initrd", e);
        }
    }

    static String sha256Hex(Path file) throws IOException {
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            return HexFormat.of().formatHex(md.digest(Files.readAllBytes(file)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
