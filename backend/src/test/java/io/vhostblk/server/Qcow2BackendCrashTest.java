package io.vhostblk.server;

import io.vhostblk.blk.BlkRequest;
import io.vhostblk.frontend.BlkClient;
import io.vhostblk.frontend.BlkDriver;
import io.vhostblk.frontend.VhostUserFrontend;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The backend process serving a qcow2 image is killed with SIGKILL at random points while
 * allocating writes are in flight (issue 4). Every time, {@code qemu-img check} must report no
 * corruption (leaked clusters are allowed), and every write acknowledged before a completed
 * FLUSH must read back through QEMU's qcow2 driver.
 */
@Timeout(value = 15, unit = TimeUnit.MINUTES)
class Qcow2BackendCrashTest {
    static final int TRIALS = Integer.getInteger("vhostblk.backend.crash.trials", 50);
    static final long SIZE = 64L << 20;
    static final int BS = 4096;
    static final int DEPTH = 8;

    @TempDir
    Path dir;

    @BeforeAll
    static void needQemuImg() {
        assumeTrue(Files.isExecutable(Path.of("/usr/bin/qemu-img")), "qemu-img is the qcow2 oracle; install qemu-utils");
    }

    private Process startBackend(Path image, Path socket, String cache) throws IOException {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        List<String> cmd = List.of(java, "--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow",
                "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
                "-Dlog4j.provider=org.apache.logging.log4j.simple.internal.SimpleProvider",
                "-cp", System.getProperty("java.class.path"), BackendMain.class.getName(),
                "--socket-path", socket.toString(), "--blk-file", image.toString(), "--format", "qcow2",
                "--cache", cache, "--num-queues", "1");
        return new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(dir.resolve("backend.log").toFile())).start();
    }

    private static void awaitListening(Process p, Path socket) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!Files.exists(socket)) {
            assertTrue(p.isAlive(), "backend exited early");
            assertTrue(System.nanoTime() < deadline, "backend did not listen within 30 s");
            Thread.sleep(20);
        }
    }

    private static void stamp(MemorySegment buf, long block, int trial) {
        for (int i = 0; i < BS; i += 8) {
            buf.set(JAVA_LONG, i, (block << 20) ^ ((long) trial << 48) ^ i ^ 0x5DEECE66DL);
        }
    }

    private static boolean stamped(byte[] img, long block, int trial) {
        MemorySegment m = MemorySegment.ofArray(img);
        for (int i = 0; i < BS; i += 8) {
            if (m.get(java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED, block * BS + i) != ((block << 20) ^ ((long) trial << 48) ^ i ^ 0x5DEECE66DL)) {
                return false;
            }
        }
        return true;
    }

    @Test
    void sigkillDuringAllocatingWritesLeavesAConsistentImage() throws Exception {
        int leaksSeen = 0;
        int durableChecked = 0;
        for (int trial = 0; trial < TRIALS; trial++) {
            SplittableRandom rnd = new SplittableRandom(1000 + trial);
            Path image = dir.resolve("t" + trial + ".qcow2");
            String cluster = trial % 2 == 0 ? "4096" : "65536";
            InProcessBackend.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=" + cluster,
                    image.toString(), Long.toString(SIZE));
            Path socket = dir.resolve("t" + trial + ".sock");
            Process p = startBackend(image, socket, trial % 3 == 0 ? "none" : "writeback");
            awaitListening(p, socket);

            // Every 4 KiB block is written at most once per trial, in a random order.
            int blocks = (int) (SIZE / BS);
            int[] order = new int[blocks];
            for (int i = 0; i < blocks; i++) {
                order[i] = i;
            }
            for (int i = blocks - 1; i > 0; i--) {
                int j = rnd.nextInt(i + 1);
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
            List<Integer> acked = new ArrayList<>();
            List<Integer> durable = new ArrayList<>();
            int killAfter = 16 + rnd.nextInt(400);
            int next = 0;
            try (BlkClient c = BlkClient.open(VhostUserFrontend.connect(socket.toString(), 10_000),
                    BlkClient.Options.defaults().slots(DEPTH, BS))) {
                BlkDriver d = c.driver(0);
                int[] blockOf = new int[DEPTH];
                boolean flushInFlight = false;
                int flushSlot = -1;
                List<Integer> ackedAtFlush = new ArrayList<>();
                while (next < killAfter) {
                    int slot;
                    while (next < killAfter && (slot = d.acquire()) >= 0) {
                        if (!flushInFlight && next > 0 && rnd.nextInt(20) == 0) {
                            // FLUSH: the writes acknowledged so far become durable when it completes.
                            flushInFlight = true;
                            flushSlot = slot;
                            ackedAtFlush = new ArrayList<>(acked);
                            assertTrue(d.submit(slot, BlkRequest.T_FLUSH, 0, 0));
                            continue;
                        }
                        int block = order[next++];
                        stamp(d.data(slot), block, trial);
                        blockOf[slot] = block;
                        assertTrue(d.submit(slot, BlkRequest.T_OUT, (long) block * BS / 512, BS));
                    }
                    d.publish();
                    int s;
                    boolean any = false;
                    while ((s = d.poll()) >= 0) {
                        any = true;
                        assertEquals(BlkRequest.S_OK, d.status(s), "trial " + trial);
                        if (s == flushSlot && flushInFlight) {
                            durable = ackedAtFlush;
                            flushInFlight = false;
                            flushSlot = -1;
                        } else {
                            acked.add(blockOf[s]);
                        }
                        d.release(s);
                    }
                    if (!any) {
                        assertTrue(d.await(TimeUnit.SECONDS.toNanos(10)), "completion within 10 s");
                    }
                }
                // Requests are in flight now: kill the backend without warning.
                p.destroyForcibly();
                assertTrue(p.waitFor(10, TimeUnit.SECONDS));
            } catch (RuntimeException ignoredAfterKill) {
                // the frontend may notice the dead backend while closing
            } finally {
                if (p.isAlive()) {
                    p.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
                }
            }
            Process check = new ProcessBuilder("qemu-img", "check", image.toString()).redirectErrorStream(true).start();
            String out = new String(check.getInputStream().readAllBytes());
            int rc = check.waitFor();
            assertTrue(rc == 0 || rc == 3, "trial " + trial + ": qemu-img check exit " + rc + " (2 = corruption)\n" + out);
            assertTrue(!out.contains("ERROR") && !out.contains("corrupt"), "trial " + trial + ":\n" + out);
            leaksSeen += rc == 3 ? 1 : 0;
            Path raw = dir.resolve("t" + trial + ".raw");
            InProcessBackend.run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", image.toString(), raw.toString());
            byte[] bytes = Files.readAllBytes(raw);
            for (int block : durable) {
                assertTrue(stamped(bytes, block, trial), "trial " + trial + ": block " + block
                        + " was acknowledged before a completed FLUSH but does not read back");
                durableChecked++;
            }
            Files.delete(raw);
            Files.delete(image);
        }
        System.out.printf("qcow2 backend crash test: %d trials, %d flushed writes verified, %d images with leaked clusters%n",
                TRIALS, durableChecked, leaksSeen);
        assertTrue(durableChecked > 0, "some trials verified flushed data");
    }
}
