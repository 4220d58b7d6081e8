package io.vhostblk.linux;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class LinuxBindingsTest {

    @Test
    void errnoIsCapturedAndNamed() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> Libc.open("/nonexistent/x", Libc.O_RDONLY, 0));
        assertEquals(Errno.ENOENT, e.errno());
        assertTrue(e.getMessage().contains("No such file"), e.getMessage());
    }

    @Test
    void fdsTravelOverUnixSocketsAndStayUsable(@TempDir Path dir) throws Exception {
        String path = dir.resolve("s.sock").toString();
        int listen = UnixSocket.listen(path, 1);
        CompletableFuture<UnixSocket> accepted = CompletableFuture.supplyAsync(() -> UnixSocket.accept(listen));
        try (UnixSocket client = UnixSocket.connect(path); UnixSocket server = accepted.get(5, TimeUnit.SECONDS);
             Arena a = Arena.ofConfined()) {
            int memfd = Libc.memfdCreate("t", Libc.MFD_CLOEXEC);
            Libc.ftruncate(memfd, 4096);
            MemorySegment map = Libc.mmap(4096, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, memfd, 0);
            map.set(JAVA_LONG, 8, 0x1122334455667788L);
            int efd = EventFd.create();

            MemorySegment msg = a.allocate(12);
            msg.set(JAVA_INT, 0, 42);
            client.send(msg, 12, new int[] {memfd, efd}, 2);

            MemorySegment in = a.allocate(12);
            int[] fds = new int[8];
            assertEquals(2, server.receive(in, 12, fds));
            assertEquals(42, in.get(JAVA_INT, 0));
            MemorySegment map2 = Libc.mmap(4096, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, fds[0], 0);
            assertEquals(0x1122334455667788L, map2.get(JAVA_LONG, 8));
            assertTrue(EventFd.signal(efd));
            assertEquals(1, EventFd.drain(fds[1]));
            assertEquals(0, EventFd.drain(fds[1]));

            client.close();
            assertEquals(-1, server.receive(in, 12, fds), "clean EOF");
            Libc.munmap(map);
            Libc.munmap(map2);
            for (int fd : new int[] {memfd, efd, fds[0], fds[1]}) {
                Libc.close(fd);
            }
        } finally {
            Libc.close(listen);
        }
    }

    @Test
    void epollReportsReadyTokens() {
        try (Epoll ep = new Epoll(4)) {
            int a = EventFd.create();
            int b = EventFd.create();
            ep.add(a, Epoll.EPOLLIN, 7);
            ep.add(b, Epoll.EPOLLIN, 9);
            assertEquals(0, ep.await(0));
            EventFd.signal(b);
            assertEquals(1, ep.await(1000));
            assertEquals(9, ep.token(0));
            Libc.close(a);
            Libc.close(b);
        }
    }

    @Test
    void ioUringWritesAndReadsAFileThroughIovecs(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("data");
        Files.write(f, new byte[8192]);
        int fd = Libc.open(f.toString(), Libc.O_RDWR | Libc.O_CLOEXEC, 0);
        try (IoUring ring = new IoUring(8); Arena a = Arena.ofConfined()) {
            int efd = EventFd.create();
            ring.registerEventFd(efd);
            MemorySegment buf = a.allocate(4096, 4096);
            for (int i = 0; i < 4096; i++) {
                buf.set(JAVA_BYTE, i, (byte) i);
            }
            MemorySegment iov = a.allocate(16, 8);
            iov.set(JAVA_LONG, 0, buf.address());
            iov.set(JAVA_LONG, 8, 4096);
            assertTrue(ring.prepWritev(fd, iov.address(), 1, 4096, 0, 77));
            assertEquals(1, ring.submit(1));
            long[] got = new long[2];
            assertEquals(1, ring.reap((ud, res) -> { got[0] = ud; got[1] = res; }));
            assertEquals(77, got[0]);
            assertEquals(4096, got[1]);
            assertTrue(EventFd.drain(efd) >= 1, "completion signalled the registered eventfd");

            assertTrue(ring.prepFsync(fd, IoUring.FSYNC_DATASYNC, 78));
            ring.submit(1);
            ring.reap((ud, res) -> { got[0] = ud; got[1] = res; });
            assertEquals(0, got[1]);

            byte[] expect = new byte[4096];
            for (int i = 0; i < 4096; i++) {
                expect[i] = (byte) i;
            }
            assertArrayEquals(expect, java.util.Arrays.copyOfRange(Files.readAllBytes(f), 4096, 8192));

            assertTrue(ring.prepFallocate(fd, Libc.FALLOC_FL_PUNCH_HOLE | Libc.FALLOC_FL_KEEP_SIZE, 4096, 4096, 79));
            ring.submit(1);
            ring.reap((ud, res) -> { got[0] = ud; got[1] = res; });
            assertEquals(0, got[1]);
            assertEquals(new byte[4096].length, java.util.Arrays.copyOfRange(Files.readAllBytes(f), 4096, 8192).length);
            assertEquals(0, Files.readAllBytes(f)[5000]);
            Libc.close(efd);
        } finally {
            Libc.close(fd);
        }
    }
}
