package io.vhostblk.image.qcow2;

import org.junit.jupiter.api.Assumptions;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Runs qemu-img / qemu-io, the oracle of these tests. */
final class QemuTool {
    record Result(int exit, String out, String err) {
    }

    private QemuTool() {
    }

    static void assumePresent() {
        Assumptions.assumeTrue(Files.isExecutable(Path.of("/usr/bin/qemu-img")) || onPath("qemu-img"), "qemu-img is not installed");
    }

    private static boolean onPath(String tool) {
        String p = System.getenv("PATH");
        if (p == null) {
            return false;
        }
        for (String d : p.split(":")) {
            if (Files.isExecutable(Path.of(d, tool))) {
                return true;
            }
        }
        return false;
    }

    static Result run(Path dir, String... cmd) {
        try {
            ProcessBuilder pb = new ProcessBuilder(cmd).directory(dir.toFile());
            Path out = Files.createTempFile("qt", ".out");
            Path err = Files.createTempFile("qt", ".err");
            pb.redirectOutput(out.toFile()).redirectError(err.toFile()).redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
            Process p = pb.start();
            if (!p.waitFor(120, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IllegalStateException("timeout: " + Arrays.toString(cmd));
            }
            Result r = new Result(p.exitValue(), Files.readString(out, StandardCharsets.UTF_8), Files.readString(err, StandardCharsets.UTF_8));
            Files.deleteIfExists(out);
            Files.deleteIfExists(err);
            return r;
        } catch (IOException e) {
            throw new IllegalStateException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    /** Runs and fails unless the exit code is 0; returns stdout. */
    static String ok(Path dir, String... cmd) {
        Result r = run(dir, cmd);
        if (r.exit() != 0) {
            throw new AssertionError(String.join(" ", cmd) + " exited " + r.exit() + "\n" + r.out() + r.err());
        }
        return r.out();
    }

    static String img(Path dir, String... args) {
        List<String> c = new ArrayList<>();
        c.add("qemu-img");
        c.addAll(List.of(args));
        return ok(dir, c.toArray(String[]::new));
    }

    /** qemu-io -c CMD ... on an image (format given). */
    static String io(Path dir, String fmt, String image, String... cmds) {
        List<String> c = new ArrayList<>(List.of("qemu-io", "-f", fmt));
        for (String s : cmds) {
            c.add("-c");
            c.add(s);
        }
        c.add(image);
        String out = ok(dir, c.toArray(String[]::new));
        if (out.contains("failed") || out.contains("error")) {
            throw new AssertionError("qemu-io: " + out);
        }
        return out;
    }

    /** The image's contents as qemu-img sees them. */
    static byte[] rawContents(Path dir, String image) throws IOException {
        Path out = dir.resolve("oracle-" + System.nanoTime() + ".raw");
        img(dir, "convert", "-O", "raw", image, out.toString());
        byte[] b = Files.readAllBytes(out);
        Files.delete(out);
        return b;
    }

    /** Parsed `qemu-img check --output=json`: the fields tests look at. */
    record Check(int exit, long corruptions, long leaks, long checkErrors, long allocated, long imageEnd, long fragmented,
                 long compressed, long total, String json) {
        boolean clean() {
            return corruptions == 0 && checkErrors == 0;
        }
    }

    static Check check(Path dir, String image) {
        Result r = run(dir, "qemu-img", "check", "--output=json", image);
        String j = r.out();
        return new Check(r.exit(), num(j, "corruptions"), num(j, "leaks"), num(j, "check-errors"),
                num(j, "allocated-clusters"), num(j, "image-end-offset"), num(j, "fragmented-clusters"),
                num(j, "compressed-clusters"), num(j, "total-clusters"), j + r.err());
    }

    static long num(String json, String key) {
        int i = json.indexOf("\"" + key + "\"");
        if (i < 0) {
            return 0;
        }
        int c = json.indexOf(':', i) + 1;
        int e = c;
        while (e < json.length() && (Character.isWhitespace(json.charAt(e)) || Character.isDigit(json.charAt(e)) || json.charAt(e) == '-')) {
            e++;
        }
        return Long.parseLong(json.substring(c, e).trim());
    }

    /** Asserts the library's check of {@code image} agrees with qemu-img check. */
    static void assertCheckAgrees(Path dir, String image) {
        Check q = check(dir, image);
        try (Qcow2Image img = Qcow2Image.open(dir.resolve(image).toString(), true, Options.defaults())) {
            Qcow2Check.Result r = Qcow2Check.check(img);
            String both = "qemu-img: " + q.json() + "\nours: " + r;
            org.junit.jupiter.api.Assertions.assertEquals(q.corruptions(), r.corruptions(), both);
            org.junit.jupiter.api.Assertions.assertEquals(q.leaks(), r.leaks(), both);
            org.junit.jupiter.api.Assertions.assertEquals(q.allocated(), r.allocatedClusters(), both);
            org.junit.jupiter.api.Assertions.assertEquals(q.fragmented(), r.fragmentedClusters(), both);
            org.junit.jupiter.api.Assertions.assertEquals(q.compressed(), r.compressedClusters(), both);
            org.junit.jupiter.api.Assertions.assertEquals(q.total(), r.totalClusters(), both);
            org.junit.jupiter.api.Assertions.assertEquals(q.imageEnd(), r.imageEndOffset(), both);
        }
    }
}
