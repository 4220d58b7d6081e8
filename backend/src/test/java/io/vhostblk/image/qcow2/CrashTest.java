package io.vhostblk.image.qcow2;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * A child JVM writes through the library and is SIGKILLed at random points. Every time,
 * qemu-img check must find no corruption, and every operation acknowledged before the last
 * completed flush must read back (through qemu-img, not the library).
 */
class CrashTest {
    static final int TRIALS = Integer.getInteger("vhostblk.crash.trials", 50);

    @TempDir
    Path dir;

    static final String[] CONFIGS = {
            "cluster_size=4k",
            "cluster_size=64k,extended_l2=on",
            "cluster_size=512,refcount_bits=64",
            "cluster_size=16k,refcount_bits=1",
            "compat=0.10,cluster_size=4k"};

    /** One child process and what it reported. */
    private final class Trial {
        final int n;
        final String cfg;
        final long size = 2L << 20;
        final int cs;
        final long seed;
        final Path image;
        final Process p;
        final AtomicInteger flushed = new AtomicInteger(0);
        final AtomicReference<String> problem = new AtomicReference<>();
        final CountDownLatch ready = new CountDownLatch(1);
        final Thread reader;

        final int crashPoint;

        Trial(int n, long seed, String java, String cp, int crashPoint) throws Exception {
            this.crashPoint = crashPoint;
            this.n = n;
            this.cfg = CONFIGS[n % CONFIGS.length];
            this.seed = seed;
            this.cs = cfg.contains("512,") ? 512 : cfg.contains("64k") ? 65536 : cfg.contains("16k") ? 16384 : 4096;
            this.image = dir.resolve("crash" + n + ".qcow2");
            QemuTool.img(dir, "create", "-f", "qcow2", "-o", cfg, image.toString(), Long.toString(size));
            p = new ProcessBuilder(java, "--enable-native-access=ALL-UNNAMED", "-XX:TieredStopAtLevel=1",
                    "-Dlog4j.provider=org.apache.logging.log4j.simple.internal.SimpleProvider",
                    "-XX:+UseSerialGC", "-Xmx96m", "-cp", cp, CrashWorker.class.getName(), image.toString(), Long.toString(seed),
                    crashPoint > 0 ? Integer.toString(crashPoint) : "")
                    .redirectErrorStream(true).start();
            reader = Thread.ofPlatform().start(() -> {
                try (BufferedReader br = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                    String line;
                    while ((line = br.readLine()) != null) {
                        if (line.equals("READY")) {
                            ready.countDown();
                        } else if (line.startsWith("F ")) {
                            flushed.set(Integer.parseInt(line.substring(2)));
                        } else if (!line.startsWith("WARNING") && !line.isBlank()) {
                            problem.compareAndSet(null, line);
                        }
                    }
                } catch (Exception e) {
                    problem.compareAndSet(null, e.toString());
                }
                ready.countDown();
            });
        }

        void killAfter(long millis) throws Exception {
            ready.await(30, TimeUnit.SECONDS);
            if (crashPoint > 0 && p.waitFor(millis + 2000, TimeUnit.MILLISECONDS)) {
                reader.join(5000);
                return; // halted itself at the crash point
            }
            Thread.sleep(crashPoint > 0 ? 0 : millis);
            // SIGKILL without closing our end of the pipe, so every line the child wrote is read
            new ProcessBuilder("kill", "-KILL", Long.toString(p.pid())).start().waitFor();
            if (!p.waitFor(10, TimeUnit.SECONDS)) {
                p.destroyForcibly();
            }
            reader.join(5000);
        }
    }

    @Test
    void sigkillAtRandomPointsLeavesConsistentImages() throws Exception {
        QemuTool.assumePresent();
        Random rnd = new Random(20240601);
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        String cp = System.getProperty("java.class.path");
        long leaks = 0;
        long flushes = 0;
        Trial next = new Trial(0, rnd.nextLong(), java, cp, 0);
        for (int n = 0; n < TRIALS; n++) {
            Trial t = next;
            // the next child starts up while this one works and is checked
            next = n + 1 < TRIALS ? new Trial(n + 1, rnd.nextLong(), java, cp,
                    (n + 1) % 2 == 1 ? 1 + rnd.nextInt(120) : 0) : null;
            t.killAfter(5 + rnd.nextInt(250));
            String what = "trial " + n + " (" + t.cfg + (t.crashPoint > 0 ? ", halt after metadata write " + t.crashPoint : ", SIGKILL") + ")";
            if (t.problem.get() != null) {
                fail(what + ": child said: " + t.problem.get());
            }
            QemuTool.Check chk = QemuTool.check(dir, t.image.toString());
            assertEquals(0, chk.corruptions(), what + ": " + chk.json());
            assertEquals(0, chk.checkErrors(), what + ": " + chk.json());
            leaks += chk.leaks();
            QemuTool.assertCheckAgrees(dir, t.image.getFileName().toString());
            flushes += t.flushed.get();
            verifyFlushed(t.image, t.size, t.cs, t.seed, t.flushed.get(), what);
            Files.deleteIfExists(t.image);
        }
        System.out.println("crash trials: " + TRIALS + ", operations acknowledged by a flush: " + flushes
                + ", leaked clusters in total: " + leaks);
    }

    private void verifyFlushed(Path image, long size, int cs, long seed, int k, String what) throws Exception {
        byte[] expected = new byte[(int) size];
        boolean[] uncertain = new boolean[(int) size];
        for (int i = 0; i < k; i++) {
            CrashWorker.Op op = CrashWorker.op(seed, i, size, cs);
            apply(op, expected, cs, size);
        }
        // the operations after the last acknowledged flush, up to and including the next flush
        for (int i = k; ; i++) {
            CrashWorker.Op op = CrashWorker.op(seed, i, size, cs);
            if (op.type() == CrashWorker.FLUSH) {
                break;
            }
            for (long b = op.off(); b < op.off() + op.len(); b++) {
                uncertain[(int) b] = true;
            }
            if (op.type() == CrashWorker.DISCARD) {
                // discard acts on whole clusters only
                continue;
            }
        }
        byte[] got = QemuTool.rawContents(dir, image.toString());
        for (int b = 0; b < size; b++) {
            if (!uncertain[b] && got[b] != expected[b]) {
                fail("trial " + what + ": byte " + b + " is " + got[b] + ", flushed value " + expected[b]
                        + " (flushed ops: " + k + ")");
            }
        }
    }

    static void apply(CrashWorker.Op op, byte[] ref, int cs, long size) {
        switch (op.type()) {
            case CrashWorker.WRITE -> System.arraycopy(CrashWorker.data(op), 0, ref, (int) op.off(), op.len());
            case CrashWorker.ZERO -> java.util.Arrays.fill(ref, (int) op.off(), (int) (op.off() + op.len()), (byte) 0);
            case CrashWorker.DISCARD -> {
                long first = (op.off() + cs - 1) / cs;
                long end = (op.off() + op.len()) / cs;
                if (op.off() + op.len() == size) {
                    end = (size + cs - 1) / cs;
                }
                for (long g = first; g < end; g++) {
                    java.util.Arrays.fill(ref, (int) (g * cs), (int) Math.min(size, (g + 1) * cs), (byte) 0);
                }
            }
            default -> {
            }
        }
    }

}
