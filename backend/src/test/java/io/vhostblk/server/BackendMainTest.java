package io.vhostblk.server;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The command line: capabilities, and one clear error line with a non-zero exit for bad input. */
class BackendMainTest {
    @TempDir
    Path dir;

    record Outcome(int code, String out, String err) {
    }

    private static synchronized Outcome run(String... args) {
        PrintStream out = System.out;
        PrintStream err = System.err;
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        ByteArrayOutputStream e = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(o, true, StandardCharsets.UTF_8));
            System.setErr(new PrintStream(e, true, StandardCharsets.UTF_8));
            int code = BackendMain.run(args);
            return new Outcome(code, o.toString(StandardCharsets.UTF_8), e.toString(StandardCharsets.UTF_8));
        } finally {
            System.setOut(out);
            System.setErr(err);
        }
    }

    private static void assertOneErrorLine(Outcome r, int code, String mentions) {
        assertEquals(code, r.code(), r.toString());
        String[] lines = r.err().strip().split("\n");
        assertEquals(1, lines.length, "exactly one error line: " + r.err());
        assertTrue(lines[0].startsWith("vhostblk-backend: "), lines[0]);
        assertTrue(lines[0].contains(mentions), "'" + lines[0] + "' should mention " + mentions);
    }

    @Test
    void printsCapabilitiesAndIgnoresEverythingElse() {
        Outcome r = run("--print-capabilities", "--no-such-option", "--num-queues", "x");
        assertEquals(0, r.code());
        assertEquals("{\"type\": \"block\", \"features\": [\"read-only\", \"blk-file\"]}", r.out().strip());
    }

    @Test
    void badArgumentsExitTwoWithOneLine() throws Exception {
        Path img = Files.write(dir.resolve("d.raw"), new byte[1 << 20]);
        String sock = dir.resolve("s.sock").toString();
        assertOneErrorLine(run("--socket-path", sock, "--blk-file", img.toString(), "--bogus"), 2, "bogus");
        assertOneErrorLine(run("--socket-path", sock), 2, "--blk-file");
        assertOneErrorLine(run("--blk-file", img.toString()), 2, "--socket-path");
        assertOneErrorLine(run("--socket-path", sock, "--fd", "3", "--blk-file", img.toString()), 2, "exactly one");
        assertOneErrorLine(run("--socket-path", sock, "--blk-file", img.toString(), "--num-queues", "0"), 2, "--num-queues");
        assertOneErrorLine(run("--socket-path", sock, "--blk-file", img.toString(), "--queue-size", "100"), 2, "power of two");
        assertOneErrorLine(run("--socket-path", sock, "--blk-file", img.toString(), "--engine", "aio"), 2, "--engine");
        assertOneErrorLine(run("--socket-path", sock, "--blk-file", img.toString(), "--cache", "unsafe"), 2, "--cache");
        assertOneErrorLine(run("--socket-path", sock, "--blk-file", img.toString(), "--format", "vmdk"), 2, "vmdk");
        assertOneErrorLine(run("--socket-path", sock, "--blk-file", img.toString(), "--serial", "x".repeat(21)), 2, "20 bytes");
        assertOneErrorLine(run("--socket-path", sock, "--blk-file", img.toString(), "stray"), 2, "stray");
        assertOneErrorLine(run("--socket-path", sock, "--blk-file", img.toString(), "--l2-cache-size", "lots"), 2, "size such as");
        assertOneErrorLine(run("--socket-path", sock, "--blk-file", img.toString(), "--l2-cache-size", "1k"), 2, "64k..4G");
    }

    @Test
    void unusableFilesAndSocketPathsExitOneWithOneLine() throws Exception {
        Path img = Files.write(dir.resolve("d.raw"), new byte[1 << 20]);
        String sock = dir.resolve("s.sock").toString();
        assertOneErrorLine(run("--socket-path", sock, "--blk-file", dir.resolve("missing.raw").toString()), 1, "No such file");
        assertOneErrorLine(run("--socket-path", sock, "--blk-file", dir.toString()), 1, "Is a directory");
        assertOneErrorLine(run("--socket-path", sock, "--blk-file", "/dev/null", "--read-only"), 1, "neither a regular file");
        Files.write(dir.resolve("tiny.raw"), new byte[100]);
        assertOneErrorLine(run("--socket-path", sock, "--blk-file", dir.resolve("tiny.raw").toString()), 1, "smaller than one");
        assertOneErrorLine(run("--socket-path", dir.resolve("no/such/dir/s.sock").toString(), "--blk-file", img.toString()), 1, "bind");
        assertOneErrorLine(run("--socket-path", dir.resolve("x".repeat(120)).toString(), "--blk-file", img.toString()), 1, "longer than");
    }
}
