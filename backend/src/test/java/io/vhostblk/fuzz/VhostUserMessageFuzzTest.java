package io.vhostblk.fuzz;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.vhostblk.blk.BlkRequest;
import io.vhostblk.frontend.BlkClient;
import io.vhostblk.image.CacheMode;
import io.vhostblk.server.InProcessBackend;
import io.vhostblk.server.RawSession;
import io.vhostblk.vhostuser.Message;
import org.junit.jupiter.api.AfterAll;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * vhost-user message sequences from arbitrary bytes, sent to the in-process backend over its real
 * UNIX socket with real fds attached.
 *
 * <p>Input format ({@link FuzzInput}, little-endian), messages until the input ends (at most
 * {@link #MAX_MESSAGES}):
 * <pre>
 *   u8  op       bits 0-5: request code (63: a u32 code follows), bit 6: NEED_REPLY,
 *                bit 7: raw header (u32 flags and u32 announced size follow; the announced
 *                size need not match the payload actually sent)
 *   [u32 code] [u32 flags, u32 size]
 *   u8  fds      low 4 bits: number of fds (more than 8 send 8); then per fd a u8 kind:
 *                bit 7: an eventfd; else a memfd of (kind &amp; 63) pages of 4 KiB, and with
 *                bit 6 a u16 length and that many content bytes at offset 0
 *   u16 length   payload length (modulo 4097), then the payload bytes
 * </pre>
 * See {@link Msg} for the same format as objects (the seed builder).
 *
 * <p>Invariants: the backend thread never dies; after our last message and a half-close of our
 * side, the backend ends the session (closes the socket, tears the session down) within
 * {@link #SESSION_END_MS}; everything it sent was a well-formed reply, to a request we sent as long
 * as every header announced the payload that followed it; and
 * the next frontend, a {@link BlkClient}, negotiates, sets up a ring and does I/O (every
 * {@link #HEALTH_EVERY}th execution while fuzzing, after every input in regression mode).
 */
class VhostUserMessageFuzzTest {
    static final int MAX_MESSAGES = 64;
    static final int SESSION_END_MS = 20_000;
    /** A session still sending after this long is cut (our socket shut down) and reported. */
    static final long SESSION_LIMIT_MS = 40_000;
    private static final ScheduledExecutorService WATCHDOG = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "msgfuzz-watchdog");
        t.setDaemon(true);
        return t;
    });
    /** While fuzzing, the fresh-frontend check runs on every this-many-th execution (it costs more than the input). */
    static final int HEALTH_EVERY = FuzzStats.fuzzing() ? 16 : 1;
    private static InProcessBackend backend;

    /** One fd to attach: an eventfd, or a memfd of {@code pages} pages with {@code content} at offset 0. */
    record Fd(boolean eventFd, int pages, byte[] content) {
        static Fd event() {
            return new Fd(true, 0, new byte[0]);
        }

        static Fd mem(int pages) {
            return new Fd(false, pages, new byte[0]);
        }

        static Fd mem(int pages, byte[] content) {
            return new Fd(false, pages, content);
        }
    }

    /** One message; {@code flags} and {@code announced} are used only when {@code raw}. */
    record Msg(int code, boolean needReply, boolean raw, int flags, int announced, List<Fd> fds, byte[] payload) {
        static Msg of(int code, byte[] payload, Fd... fds) {
            return new Msg(code, false, false, 0, 0, List.of(fds), payload);
        }

        static Msg acked(int code, byte[] payload, Fd... fds) {
            return new Msg(code, true, false, 0, 0, List.of(fds), payload);
        }

        static Msg raw(int code, int flags, int announced, byte[] payload, Fd... fds) {
            return new Msg(code, false, true, flags, announced, List.of(fds), payload);
        }

        void write(FuzzInput.Writer w) {
            boolean bigCode = code < 0 || code >= 63;
            w.u8((bigCode ? 63 : code) | (needReply ? 0x40 : 0) | (raw ? 0x80 : 0));
            if (bigCode) {
                w.u32(code);
            }
            if (raw) {
                w.u32(flags).u32(announced);
            }
            w.u8(fds.size());
            for (Fd f : fds) {
                if (f.eventFd()) {
                    w.u8(0x80);
                } else {
                    w.u8(f.pages() | (f.content().length > 0 ? 0x40 : 0));
                    if (f.content().length > 0) {
                        w.u16(f.content().length).bytes(f.content());
                    }
                }
            }
            w.u16(payload.length).bytes(payload);
        }

        static Msg read(FuzzInput in) {
            int op = in.u8();
            int code = (op & 63) == 63 ? in.u32() : op & 63;
            boolean needReply = (op & 0x40) != 0;
            boolean raw = (op & 0x80) != 0;
            int flags = raw ? in.u32() : 0;
            int announced = raw ? in.u32() : 0;
            int nfds = Math.min(8, in.u8() & 0x0F);
            List<Fd> fds = new ArrayList<>();
            for (int i = 0; i < nfds; i++) {
                int kind = in.u8();
                if ((kind & 0x80) != 0) {
                    fds.add(Fd.event());
                } else {
                    byte[] content = (kind & 0x40) != 0 ? in.bytes(in.u16()) : new byte[0];
                    fds.add(Fd.mem(kind & 63, content));
                }
            }
            byte[] payload = in.bytes(in.u16() % (Message.MAX_PAYLOAD + 1));
            return new Msg(code, needReply, raw, flags, announced, fds, payload);
        }
    }

    static byte[] encode(List<Msg> msgs) {
        FuzzInput.Writer w = new FuzzInput.Writer();
        msgs.forEach(m -> m.write(w));
        return w.toByteArray();
    }

    static List<Msg> decode(byte[] data) {
        FuzzInput in = new FuzzInput(data);
        List<Msg> l = new ArrayList<>();
        while (in.hasMore() && l.size() < MAX_MESSAGES) {
            l.add(Msg.read(in));
        }
        return l;
    }

    static synchronized InProcessBackend backend() {
        if (backend == null) {
            try {
                Path dir = Files.createTempDirectory("vhostblk-msgfuzz-");
                dir.toFile().deleteOnExit();
                backend = InProcessBackend.start(dir, 8L << 20, "io_uring", CacheMode.WRITEBACK, 2, 1, false, "msgfuzz", 0);
                dir.resolve("disk.raw").toFile().deleteOnExit();
                dir.resolve("vhost.sock").toFile().deleteOnExit();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        return backend;
    }

    private static final FuzzStats STATS = new FuzzStats("VhostUserMessageFuzzTest.messageSequences");

    @AfterAll
    static void report() {
        STATS.report();
    }

    // No @Timeout: Jazzer would pass it to libFuzzer as the per-input limit, but JUnit also applies
    // it to the whole fuzzing run and fails it afterwards. A watchdog bounds each session instead.
    @FuzzTest(maxDuration = "30s")
    void messageSequences(byte[] data) throws InterruptedException {
        STATS.count();
        RunResult r = run(data);
        check(r.endedInTime(), "the backend did not end the session within " + SESSION_END_MS + " ms of our half-close");
        if (STATS.executions() % HEALTH_EVERY == 0) {
            checkFreshFrontendIsServed();
        }
    }

    /** What one session did: the replies and whether the backend ended the session in time. */
    record RunResult(List<RawSession.Reply> replies, boolean closedEarly, boolean endedInTime) {
    }

    static RunResult run(byte[] data) throws InterruptedException {
        InProcessBackend b = backend();
        check(b.alive(), "backend thread died: " + describe(b.failure()));
        List<Msg> msgs = decode(data);
        Set<Integer> sent = new HashSet<>();
        // Once a header announced another size than the payload sent, the backend reads the rest
        // of the stream at other boundaries: its replies then answer requests we never framed.
        boolean inSync = true;
        boolean ended;
        boolean closedEarly = false;
        List<RawSession.Reply> replies;
        AtomicBoolean cut = new AtomicBoolean();
        AtomicBoolean done = new AtomicBoolean();
        try (RawSession s = RawSession.connect(b.socketPath())) {
            // A send blocks while the backend does not read; only shutting our socket down unblocks
            // it. The lock keeps the watchdog from touching the socket once it may be closed.
            ScheduledFuture<?> watchdog = WATCHDOG.schedule(() -> {
                synchronized (done) {
                    if (!done.get()) {
                        cut.set(true);
                        s.frontend().socket().shutdown();
                    }
                }
            }, SESSION_LIMIT_MS, TimeUnit.MILLISECONDS);
            try {
                for (Msg m : msgs) {
                    int[] fds = new int[m.fds().size()];
                    for (int i = 0; i < fds.length; i++) {
                        Fd f = m.fds().get(i);
                        fds[i] = f.eventFd() ? s.eventFd() : s.memFd(4096L * f.pages(), f.content());
                    }
                    sent.add(m.code());
                    int flags = m.raw() ? m.flags() : Message.VERSION | (m.needReply() ? Message.FLAG_NEED_REPLY : 0);
                    int announced = m.raw() ? m.announced() : m.payload().length;
                    inSync &= announced == m.payload().length;
                    if (!s.send(m.code(), flags, announced, m.payload(), fds) || !s.poll(0)) {
                        closedEarly = true;
                        break;
                    }
                }
                ended = s.finish(SESSION_END_MS);
            } finally {
                synchronized (done) {
                    done.set(true);
                }
                watchdog.cancel(false);
            }
            replies = List.copyOf(s.replies());
        }
        check(!cut.get(), "the session was still going after " + SESSION_LIMIT_MS + " ms (backend stopped reading?)");
        for (RawSession.Reply r : replies) {
            check(r.isReply() && (sent.contains(r.request()) || !inSync) && r.size() <= Message.MAX_PAYLOAD,
                    "backend sent " + r + ", which is no reply to a request of " + sent);
        }
        check(b.alive(), "backend thread died: " + describe(b.failure()));
        check(!ended || b.awaitIdle(SESSION_END_MS), "the backend closed the socket but is still in the session");
        return new RunResult(replies, closedEarly, ended);
    }

    /** A fresh frontend negotiates, starts a ring, writes and reads back 4 KiB. */
    static void checkFreshFrontendIsServed() {
        InProcessBackend b = backend();
        byte[] data = new byte[4096];
        Arrays.fill(data, (byte) 0x6B);
        try (BlkClient c = BlkClient.open(b.socketPath(), BlkClient.Options.defaults().slots(2, 4096))) {
            long buf = c.memory().allocate(4096, 4096);
            c.memory().write(buf, data);
            check(c.driver(0).write(0, buf, 4096) == BlkRequest.S_OK, "fresh frontend: write failed");
            c.memory().fill(buf, 4096, (byte) 0);
            check(c.driver(0).read(0, buf, 4096) == BlkRequest.S_OK, "fresh frontend: read failed");
            check(Arrays.equals(data, c.memory().read(buf, 4096)), "fresh frontend: read back other data");
        } catch (RuntimeException e) {
            throw new AssertionError("FINDING: a fresh frontend is not served after the input: " + e, e);
        }
        try {
            check(b.awaitIdle(SESSION_END_MS), "backend still in the fresh frontend's session");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static String describe(Throwable t) {
        if (t == null) {
            return "no exception";
        }
        java.io.StringWriter w = new java.io.StringWriter();
        t.printStackTrace(new java.io.PrintWriter(w));
        return w.toString();
    }

    private static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError("FINDING: " + what);
        }
    }
}
