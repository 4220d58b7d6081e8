package io.vhostblk.server;

import io.vhostblk.blk.BlkRequest;
import io.vhostblk.frontend.BlkClient;
import io.vhostblk.frontend.VhostUserFrontend;
import io.vhostblk.image.CacheMode;
import io.vhostblk.vhostuser.Message;
import io.vhostblk.vhostuser.ProtocolFeature;
import io.vhostblk.vhostuser.Request;
import io.vhostblk.virtq.VirtioFeature;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.management.ObjectName;
import java.util.stream.Stream;

import static io.vhostblk.server.MalformedSessionTest.addr;
import static io.vhostblk.server.MalformedSessionTest.memTable;
import static io.vhostblk.server.MalformedSessionTest.state;
import static io.vhostblk.server.MalformedSessionTest.u64;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Resource safety of issue 6: after 1000 connect/negotiate/memory/ring/I/O/disconnect cycles and
 * after 10 000 malformed sessions (eight kinds, from a garbage header to a running ring whose
 * memory table is replaced) against one in-process backend, the process is back where it
 * started. Counted after a warm-up and after the backend went idle, with GCs until nothing
 * shrinks any more (cleaners free the native memory of auto arenas only after a GC):
 * <ul>
 *   <li>open fds (/proc/self/fd) and live threads: exactly as before;</li>
 *   <li>memory mappings (/proc/self/maps lines): at most {@value #MAPS_SLACK} more, the JVM's
 *       own noise here is +-4 (code cache, GC); a leaked guest region, ring or iovec mapping
 *       per session would add thousands;</li>
 *   <li>native memory of FFM arenas and other Unsafe allocations (native memory tracking's
 *       "Other" malloc bytes): at most 256 KiB more, which a leak of 256 bytes per cycle or 26
 *       bytes per malformed session exceeds; measured: exactly equal;</li>
 *   <li>heap used after GC: at most 1 MiB more, which a leak of 1 KiB per cycle or 105 bytes per
 *       session exceeds; measured noise was under 30 KiB.</li>
 * </ul>
 * Both phases together take about 15-25 s on the 2-core CI machine. Counts can be lowered with
 * -Dvhostblk.resource.cycles and -Dvhostblk.resource.malformed when iterating.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class ResourceSafetyTest {
    static final int CYCLES = Integer.getInteger("vhostblk.resource.cycles", 1000);
    static final int MALFORMED = Integer.getInteger("vhostblk.resource.malformed", 10_000);
    static final long GPA = 0x100000;
    static final long REGION = 64 << 10;
    static final long UVA = 0x7F00_0000_0000L;

    @TempDir
    static Path dir;
    static InProcessBackend backend;

    @BeforeAll
    static void start() throws Exception {
        Usage.nativeOther(); // the first call sets up the platform MBean server: not inside a measurement
        backend = InProcessBackend.start(dir, 8L << 20, "io_uring", CacheMode.WRITEBACK, 2, 1, false, "resources", 0);
    }

    @AfterAll
    static void stop() throws InterruptedException {
        backend.close();
    }

    private static final Pattern NMT_OTHER = Pattern.compile("\\(malloc=(\\d+)\\S* tag=Other");

    /** What the process holds; heap is the used heap after full GCs (bytes). */
    record Usage(long fds, long threads, long maps, long nativeBytes, long heap) {
        static Usage now() throws Exception {
            // Native memory of unreachable auto arenas is freed by cleaners after a GC: collect
            // until neither heap nor C heap shrinks any more.
            long heap = Long.MAX_VALUE;
            long lastNative = Long.MAX_VALUE;
            for (int i = 0, stable = 0; i < 40 && stable < 3; i++) {
                System.gc();
                Thread.sleep(50);
                long h = ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
                long n = nativeOther();
                stable = h >= heap && n >= lastNative - 4096 ? stable + 1 : 0;
                heap = Math.min(heap, h);
                lastNative = Math.min(lastNative, n);
            }
            return new Usage(count(Path.of("/proc/self/fd")), ManagementFactory.getThreadMXBean().getThreadCount(),
                    Files.readAllLines(Path.of("/proc/self/maps")).size(), lastNative, heap);
        }

        /**
         * Native memory of FFM arenas and the other Unsafe allocations: the "Other" malloc bytes of
         * native memory tracking (the test JVMs run with -XX:NativeMemoryTracking=summary), or -1
         * when tracking is off. The direct-buffer MXBean does not see FFM arenas, and the C heap
         * as a whole (mallinfo2) moves by tens of MiB with JIT and thread caches.
         */
        static long nativeOther() throws Exception {
            String s = (String) ManagementFactory.getPlatformMBeanServer().invoke(
                    new ObjectName("com.sun.management:type=DiagnosticCommand"), "vmNativeMemory",
                    new Object[] {new String[] {"summary", "scale=b"}}, new String[] {String[].class.getName()});
            Matcher m = NMT_OTHER.matcher(s);
            return m.find() ? Long.parseLong(m.group(1)) : -1;
        }

        private static long count(Path d) throws IOException {
            try (Stream<Path> s = Files.list(d)) {
                return s.count();
            }
        }
    }

    static void cycle(int i) {
        try (BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults().slots(2, 4096).extra(64 << 10, 0))) {
            long buf = c.memory().allocate(4096, 4096);
            c.memory().fill(buf, 4096, (byte) i);
            assertEquals(BlkRequest.S_OK, c.driver(0).write(8L * (i % 1000), buf, 4096));
            assertEquals(BlkRequest.S_OK, c.driver(0).read(8L * (i % 1000), buf, 4096));
        }
    }

    static final int KINDS = 8;

    /** One malformed session of kind {@code i % KINDS}; returns once the backend has closed the connection. */
    static void malformed(int i) {
        try (RawSession s = RawSession.connect(backend.socketPath())) {
            int nr = Message.FLAG_NEED_REPLY;
            switch (i % KINDS) {
                case 0 -> s.frontend().sendBytes(new byte[] {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
                case 1 -> s.send(Request.SET_OWNER, 0, new byte[0], s.eventFd(), s.eventFd(), s.eventFd(), s.eventFd(),
                        s.eventFd(), s.eventFd(), s.eventFd(), s.eventFd());
                case 2 -> s.send(Request.SET_MEM_TABLE, Message.VERSION, 40, memTable(), s.memFd(REGION, new byte[0]));
                case 3 -> s.sendWithManyFds(RawSession.frame(Request.SET_OWNER, 1, 0, new byte[0]),
                        s.eventFd(), s.eventFd(), s.eventFd(), s.eventFd(), s.eventFd(), s.eventFd(), s.eventFd(),
                        s.eventFd(), s.eventFd(), s.eventFd());
                case 4 -> s.send(Request.SET_OWNER, Message.VERSION, 1 << 30, new byte[0]);
                default -> {
                    negotiate(s);
                    if (i % KINDS == 5) {
                        // overlapping regions: nack, then an unknown request ends the session
                        s.call(Request.SET_MEM_TABLE, nr, memTable(GPA, REGION, UVA, 0, GPA + 4096, REGION, UVA + REGION, 0), 5000,
                                s.memFd(REGION, new byte[0]), s.memFd(REGION, new byte[0]));
                        s.send(77, 0, new byte[0]);
                    } else if (i % KINDS == 6) {
                        // a region larger than its memfd: nack; then the session just ends
                        s.call(Request.SET_MEM_TABLE, nr, memTable(GPA, REGION, UVA, 0), 5000, s.memFd(4096, new byte[0]));
                    } else {
                        // a running ring, a memory table without it (nack), a ring index out of range (closed)
                        s.call(Request.SET_MEM_TABLE, nr, memTable(GPA, REGION, UVA, 0), 5000, s.memFd(REGION, new byte[0]));
                        s.call(Request.SET_VRING_NUM, nr, state(0, 16), 5000);
                        s.call(Request.SET_VRING_ADDR, nr, addr(0, UVA, UVA + 0x1000, UVA + 0x800), 5000);
                        s.call(Request.SET_VRING_CALL, nr, u64(0), 5000, s.eventFd());
                        s.call(Request.SET_VRING_KICK, nr, u64(0), 5000, s.eventFd());
                        s.call(Request.SET_MEM_TABLE, nr, memTable(GPA << 4, REGION, UVA << 1, 0), 5000, s.memFd(REGION, new byte[0]));
                        s.send(Request.GET_VRING_BASE, 0, state(9, 0));
                    }
                }
            }
            assertTrue(s.finish(10_000), "session " + i + ": backend did not close the connection");
        }
    }

    static void negotiate(RawSession s) {
        s.frontend().negotiate(VirtioFeature.bit(VirtioFeature.VERSION_1), 0, VhostUserFrontend.DEFAULT_PROTOCOL_FEATURES
                | ProtocolFeature.bit(ProtocolFeature.CONFIGURE_MEM_SLOTS));
    }

    static void assertBack(String what, Usage before, Usage after) {
        String msg = what + ": before " + before + ", after " + after;
        System.err.println("[resources] " + msg);
        assertEquals(before.fds(), after.fds(), "open fds, " + msg);
        assertEquals(before.threads(), after.threads(), "threads, " + msg);
        assertTrue(after.maps() <= before.maps() + MAPS_SLACK, "memory mappings, " + msg);
        if (before.nativeBytes() < 0) {
            System.err.println("[resources] native memory not checked: run with -XX:NativeMemoryTracking=summary");
        } else {
            assertTrue(after.nativeBytes() <= before.nativeBytes() + NATIVE_SLACK, "native memory, " + msg);
        }
        assertTrue(after.heap() <= before.heap() + HEAP_SLACK, "heap, " + msg);
    }

    static final long MAPS_SLACK = 8;
    static final long NATIVE_SLACK = 256 << 10;
    static final long HEAP_SLACK = 1 << 20;

    static Usage settle() throws Exception {
        assertTrue(backend.awaitIdle(10_000), "backend still in a session");
        assertTrue(backend.alive(), "backend thread died: " + backend.failure());
        Thread.sleep(100); // worker threads end after teardown joined them; let the JVM reap them
        return Usage.now();
    }

    @Test
    @Order(1)
    void connectDisconnectCyclesReleaseEverything() throws Exception {
        for (int i = 0; i < 20; i++) {
            cycle(i);
        }
        Usage before = settle();
        long t0 = System.nanoTime();
        for (int i = 0; i < CYCLES; i++) {
            cycle(i);
        }
        long ms = (System.nanoTime() - t0) / 1_000_000;
        System.err.printf("[resources] %d connect/disconnect cycles in %d ms%n", CYCLES, ms);
        assertBack(CYCLES + " cycles", before, settle());
    }

    @Test
    @Order(2)
    void malformedSessionsReleaseEverything() throws Exception {
        for (int i = 0; i < 4 * KINDS; i++) {
            malformed(i);
        }
        Usage before = settle();
        long t0 = System.nanoTime();
        for (int i = 0; i < MALFORMED; i++) {
            malformed(i);
        }
        long ms = (System.nanoTime() - t0) / 1_000_000;
        System.err.printf("[resources] %d malformed sessions in %d ms%n", MALFORMED, ms);
        assertBack(MALFORMED + " malformed sessions", before, settle());
        // and the backend still serves
        cycle(1);
    }
}
