package io.vhostblk.vhostuser;

import io.vhostblk.linux.Errno;
import io.vhostblk.linux.ErrnoException;
import io.vhostblk.linux.EventFd;
import io.vhostblk.linux.Libc;
import io.vhostblk.linux.UnixSocket;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@link MessageChannel} over a real AF_UNIX connection made with listen/connect/accept. */
class MessageChannelTest {
    @TempDir
    Path dir;

    int listenFd = -1;
    UnixSocket clientSocket;
    MessageChannel client;
    MessageChannel server;
    final Arena arena = Arena.ofConfined();

    @BeforeEach
    void connect() throws Exception {
        String path = dir.resolve("vhost.sock").toString();
        listenFd = UnixSocket.listen(path, 1);
        CompletableFuture<UnixSocket> accepted = CompletableFuture.supplyAsync(() -> UnixSocket.accept(listenFd));
        clientSocket = UnixSocket.connect(path);
        client = new MessageChannel(clientSocket);
        server = new MessageChannel(accepted.get(5, TimeUnit.SECONDS));
    }

    @AfterEach
    void close() {
        client.close();
        server.close();
        Libc.closeQuietly(listenFd);
        arena.close();
    }

    /** Sends raw header bytes as a misbehaving frontend would. */
    void sendRawHeader(int request, int flags, int size) {
        MemorySegment h = arena.allocate(12, 4);
        h.set(JAVA_INT, 0, request);
        h.set(JAVA_INT, 4, flags);
        h.set(JAVA_INT, 8, size);
        clientSocket.send(h, 12, new int[0], 0);
    }

    @Test
    void requestAndReplyRoundTripWithAnFd() {
        int efd = EventFd.create();
        try {
            Message out = new Message().begin(Request.SET_VRING_CALL, Message.FLAG_NEED_REPLY).size(8).attachFd(efd);
            out.putU64(0, 1);
            client.write(out);
            assertEquals(0, out.fdCount(), "write() hands the fds to the kernel, the message forgets them");

            Message in = new Message();
            assertTrue(server.read(in));
            assertEquals(Request.SET_VRING_CALL, in.request());
            assertEquals(Message.VERSION | Message.FLAG_NEED_REPLY, in.flags());
            assertEquals(8, in.size());
            assertEquals(1, in.u64(0));
            assertEquals(1, in.fdCount());
            int received = in.takeFd(0);
            assertTrue(received != efd, "a new descriptor for the same eventfd");
            assertTrue(EventFd.signal(received));
            assertEquals(1, EventFd.drain(efd), "the received fd is the same eventfd");
            Libc.close(received);

            in.begin(Request.SET_VRING_CALL, Message.FLAG_REPLY).size(8).putU64(0, 0);
            server.write(in);
            Message reply = new Message();
            assertTrue(client.read(reply));
            assertEquals(Request.SET_VRING_CALL, reply.request());
            assertEquals(Message.VERSION | Message.FLAG_REPLY, reply.flags());
            assertEquals(0, reply.u64(0));
            assertEquals(0, reply.fdCount());
        } finally {
            Libc.close(efd);
        }
    }

    @Test
    void eightMemfdsWithAMemTablePayload() {
        int n = 8;
        int[] memfds = new int[n];
        Message out = new Message().begin(Request.SET_MEM_TABLE, 0).size(Message.MEM_TABLE_HEADER + n * Message.MEM_REGION_SIZE);
        out.putU32(0, n);
        for (int i = 0; i < n; i++) {
            memfds[i] = Libc.memfdCreate("region" + i, Libc.MFD_CLOEXEC);
            Libc.ftruncate(memfds[i], 4096);
            MemorySegment m = Libc.mmap(4096, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, memfds[i], 0);
            m.set(JAVA_LONG, 0, 1000 + i);
            Libc.munmap(m);
            long base = Message.MEM_TABLE_HEADER + (long) i * Message.MEM_REGION_SIZE;
            out.putU64(base, 0x1_0000_0000L * i);  // guest_addr
            out.putU64(base + 8, 4096);             // size
            out.putU64(base + 16, 0x7f00_0000_0000L + 4096L * i);
            out.putU64(base + 24, 0);
            out.attachFd(memfds[i]);
        }
        client.write(out);

        Message in = new Message();
        assertTrue(server.read(in));
        assertEquals(264, in.size());
        assertEquals(n, in.u32(0));
        assertEquals(n, in.fdCount());
        for (int i = 0; i < n; i++) {
            long base = Message.MEM_TABLE_HEADER + (long) i * Message.MEM_REGION_SIZE;
            assertEquals(0x1_0000_0000L * i, in.u64(base));
            assertEquals(0x7f00_0000_0000L + 4096L * i, in.u64(base + 16));
            MemorySegment m = Libc.mmap(4096, Libc.PROT_READ, Libc.MAP_SHARED, in.fd(i), 0);
            assertEquals(1000 + i, m.get(JAVA_LONG, 0), "fd #" + i + " arrives in order");
            Libc.munmap(m);
        }
        in.closeFds();
        assertEquals(0, in.fdCount());
        for (int fd : memfds) {
            Libc.close(fd);
        }
    }

    @Test
    void fdsSentWithThePayloadPartAreCollectedToo() {
        int efd = EventFd.create();
        try {
            sendRawHeader(Request.SET_VRING_KICK, Message.VERSION, 8);
            MemorySegment p = arena.allocate(8, 8);
            p.set(JAVA_LONG, 0, 3);
            clientSocket.send(p, 8, new int[] {efd}, 1);
            Message in = new Message();
            assertTrue(server.read(in));
            assertEquals(3, in.u64(0));
            assertEquals(1, in.fdCount());
            EventFd.signal(in.fd(0));
            assertEquals(1, EventFd.drain(efd));
        } finally {
            Libc.close(efd);
        }
    }

    @Test
    void unusedFdsOfTheLastMessageAreClosedByTheNextRead() {
        int efd = EventFd.create();
        client.write(new Message().begin(Request.SET_VRING_ERR, 0).size(8).attachFd(efd));
        client.write(new Message().begin(Request.GET_FEATURES, 0));
        Message in = new Message();
        assertTrue(server.read(in));
        int leftOver = in.fd(0);
        assertEquals(0, Libc.fcntl(leftOver, Libc.F_GETFD, 0) & ~Libc.FD_CLOEXEC, "open");
        assertTrue(server.read(in));
        assertEquals(Request.GET_FEATURES, in.request());
        ErrnoException e = assertThrows(ErrnoException.class, () -> Libc.fcntl(leftOver, Libc.F_GETFD, 0));
        assertEquals(Errno.EBADF, e.errno());
        Libc.close(efd);
    }

    @Test
    void headerAnnouncingAnOversizedPayloadIsAProtocolError() {
        sendRawHeader(Request.SET_MEM_TABLE, Message.VERSION, Message.MAX_PAYLOAD + 1);
        ProtocolException e = assertThrows(ProtocolException.class, () -> server.read(new Message()));
        assertTrue(e.getMessage().contains("SET_MEM_TABLE") && e.getMessage().contains("4097"), e.getMessage());
    }

    @Test
    void headerAnnouncingA4GiBPayloadIsAProtocolError() {
        sendRawHeader(Request.GET_CONFIG, Message.VERSION, -1);
        ProtocolException e = assertThrows(ProtocolException.class, () -> server.read(new Message()));
        assertTrue(e.getMessage().contains("4294967295"), e.getMessage());
    }

    @Test
    void largestPayloadIsAccepted() {
        Message out = new Message().begin(Request.SET_CONFIG, 0).size(Message.MAX_PAYLOAD);
        out.putU64(Message.MAX_PAYLOAD - 8, 0x0BADC0DEL);
        client.write(out);
        Message in = new Message();
        assertTrue(server.read(in));
        assertEquals(Message.MAX_PAYLOAD, in.size());
        assertEquals(0x0BADC0DEL, in.u64(Message.MAX_PAYLOAD - 8));
    }

    @Test
    void cleanEndOfStreamBetweenMessages() {
        client.write(new Message().begin(Request.SET_OWNER, 0));
        clientSocket.shutdown();
        Message in = new Message();
        assertTrue(server.read(in));
        assertEquals(Request.SET_OWNER, in.request());
        assertFalse(server.read(in), "EOF at a message boundary is a clean close");
    }

    @Test
    void endOfStreamInsideThePayloadIsAnError() {
        sendRawHeader(Request.SET_FEATURES, Message.VERSION, 8);
        clientSocket.shutdown();
        assertThrows(ProtocolException.class, () -> server.read(new Message()));
    }

    @Test
    void endOfStreamInsideTheHeaderIsAnError() {
        MemorySegment half = arena.allocate(6, 4);
        half.set(JAVA_INT, 0, Request.GET_FEATURES);
        clientSocket.send(half, 6, new int[0], 0);
        clientSocket.shutdown();
        ErrnoException e = assertThrows(ErrnoException.class, () -> server.read(new Message()));
        assertEquals(Errno.ECONNRESET, e.errno());
    }

    @Test
    void payloadSplitAcrossWritesIsReassembled() {
        sendRawHeader(Request.SET_VRING_ADDR, Message.VERSION, Message.VRING_ADDR_SIZE);
        MemorySegment p = arena.allocate(Message.VRING_ADDR_SIZE, 8);
        for (int i = 0; i < 5; i++) {
            p.set(JAVA_LONG_UNALIGNED, 8L * i, 0x100L * (i + 1));
        }
        clientSocket.send(p, 13, new int[0], 0);
        clientSocket.send(p.asSlice(13), Message.VRING_ADDR_SIZE - 13, new int[0], 0);
        Message in = new Message();
        assertTrue(server.read(in));
        for (int i = 0; i < 5; i++) {
            assertEquals(0x100L * (i + 1), in.u64(8L * i));
        }
    }
}
