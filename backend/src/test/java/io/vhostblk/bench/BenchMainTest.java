package io.vhostblk.bench;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

@Timeout(value = 120, unit = TimeUnit.SECONDS)
class BenchMainTest {
    static final String QSD = "/usr/bin/qemu-storage-daemon";

    record Run(int status, String out, String err) {
    }

    static Run run(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int st = BenchMain.run(args, new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8));
        return new Run(st, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    @Test
    void badOptionsGiveOneLineAndStatus2() {
        List<String[]> bad = List.of(
                new String[] {},
                new String[] {"--socket", "s", "--rw", "randomread"},
                new String[] {"--socket", "s", "--bs", "1000"},
                new String[] {"--socket", "s", "--bs", "4x"},
                new String[] {"--socket", "s", "--iodepth", "0"},
                new String[] {"--socket", "s", "--mix", "101"},
                new String[] {"--socket", "s", "--runtime", "-1"},
                new String[] {"--socket", "s", "--queue-size", "100"},
                new String[] {"--socket", "s", "--iodepth", "400", "--queue-size", "512"},
                new String[] {"--socket", "s", "--size", "100"},
                new String[] {"--socket", "s", "--max-ios", "1", "--queues", "2"},
                new String[] {"--socket", "s", "--max-ios", "100", "--ramp-ios", "100"},
                new String[] {"--socket", "s", "--frobnicate"},
                new String[] {"--socket", "s", "extra"});
        for (String[] a : bad) {
            Run r = run(a);
            assertEquals(2, r.status(), String.join(" ", a) + " -> " + r.err());
            assertEquals(1, r.err().strip().lines().count(), "one line: " + r.err());
            assertTrue(r.err().startsWith("vhostblk-bench: "), r.err());
            assertEquals("", r.out());
        }
        assertEquals(0, run("--help").status());
    }

    @Test
    void sizesTakeSuffixes() {
        assertEquals(4096, BenchMain.parseSize("4k"));
        assertEquals(4096, BenchMain.parseSize("4KiB"));
        assertEquals(1L << 30, BenchMain.parseSize("1G"));
        assertEquals(512, BenchMain.parseSize("512"));
        assertEquals(-1, BenchMain.parseSize("x"));
        assertEquals(-1, BenchMain.parseSize("-4k"));
    }

    @Test
    void runsVerifiesAndReportsAgainstQsd(@TempDir Path dir) throws Exception {
        Assumptions.assumeTrue(Files.isExecutable(Path.of(QSD)), QSD + " is not installed");
        Path image = dir.resolve("d.raw");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(32L << 20);
        }
        Path sock = dir.resolve("q.sock");
        Process p = new ProcessBuilder(QSD, "--blockdev", "driver=file,node-name=f0,filename=" + image,
                "--export", "type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path=" + sock + ",writable=on,num-queues=2")
                .redirectErrorStream(true).redirectOutput(dir.resolve("qsd.log").toFile()).start();
        try {
            String s = sock.toString();
            Run v = run("--socket", s, "--verify", "--queues", "2", "--bs", "64k", "--iodepth", "8", "--segments", "3");
            assertEquals(0, v.status(), v.out() + v.err());
            assertTrue(v.out().matches("IOPS=\\d+ BW=[0-9.]+MiB/s lat p50=[0-9.]+us p99=[0-9.]+us p99\\.9=[0-9.]+us errors=0 cpu=[0-9.]+%"
                    + " verified=65536 mismatches=0\\s*"), v.out());
            // the stamp of sector 12345 is in the host file: its number, then the generation
            try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "r")) {
                f.seek(12345L * 512);
                assertEquals(12345L, Long.reverseBytes(f.readLong()));
            }

            Run j = run("--socket", s, "--rw", "randrw", "--mix", "70", "--runtime", "0.5", "--event-idx", "--indirect", "--json");
            assertEquals(0, j.status(), j.out() + j.err());
            String line = j.out().strip();
            assertTrue(line.startsWith("{") && line.endsWith("}") && line.lines().count() == 1, line);
            assertTrue(line.contains("\"rw\":\"randrw\"") && line.contains("\"errors\":0") && line.contains("\"event_idx\":true"), line);
            assertTrue(line.matches(".*\"reads\":[1-9]\\d*,\"writes\":[1-9]\\d*,.*"), line);

            // --max-ios ends the run long before --runtime, --ramp-ios the ramp before --ramp: 500 ramp, 1500 measured
            Run lim = run("--socket", s, "--rw", "randwrite", "--iodepth", "16", "--runtime", "30", "--ramp", "30", "--max-ios", "2000",
                    "--ramp-ios", "500", "--json");
            assertEquals(0, lim.status(), lim.out() + lim.err());
            Object lj = MiniJson.parse(lim.out().strip());
            assertEquals(2000.0, MiniJson.num(lj, "submitted"), lim.out());
            assertEquals(1500.0, MiniJson.num(lj, "ios"), lim.out());
            assertEquals(2000.0, MiniJson.num(lj, "max_ios"), lim.out());
            assertTrue(MiniJson.num(lj, "seconds") < 20, lim.out());
            Run q = run("--socket", s, "--queues", "3", "--runtime", "0.2");
            assertEquals(2, q.status(), "more queues than the export has: " + q.err());
            Run big = run("--socket", s, "--size", "1g", "--runtime", "0.2");
            assertEquals(2, big.status(), big.err());
            assertTrue(big.err().contains("capacity"), big.err());
        } finally {
            p.destroy();
            p.waitFor(10, TimeUnit.SECONDS);
        }
    }
}
