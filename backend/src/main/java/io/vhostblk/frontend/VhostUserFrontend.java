package io.vhostblk.frontend;

import io.vhostblk.blk.BlkConfig;
import io.vhostblk.linux.ErrnoException;
import io.vhostblk.linux.UnixSocket;
import io.vhostblk.vhostuser.Message;
import io.vhostblk.vhostuser.MessageChannel;
import io.vhostblk.vhostuser.ProtocolException;
import io.vhostblk.vhostuser.ProtocolFeature;
import io.vhostblk.vhostuser.Request;
import io.vhostblk.virtq.VirtioFeature;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;

/**
 * The frontend (QEMU's role) of a vhost-user connection: negotiates features, shares
 * {@link GuestMemory}, sets up {@link DriverQueue}s and tears them down again. Meant for tests
 * and the benchmark, so besides the typed calls it has a raw layer ({@link #tx()},
 * {@link #send()}, {@link #receive(int)}, {@link #call}) that sends any request code, flags,
 * payload and fds and hands back whatever the backend answers.
 *
 * <p>Typical use:
 * <pre>{@code
 * try (var fe = VhostUserFrontend.connect(path)) {
 *     var n = fe.negotiate(required, optional, VhostUserFrontend.DEFAULT_PROTOCOL_FEATURES);
 *     var cfg = fe.getBlkConfig();
 *     fe.setMemTable(memory);
 *     fe.startQueue(queue);
 *     ... I/O ...
 *     fe.stopQueue(queue);
 * }
 * }</pre>
 *
 * <p>With REPLY_ACK negotiated every message that has no reply of its own is sent with
 * NEED_REPLY and the acknowledgement is checked ({@link NackException} on non-zero). Replies are
 * awaited for at most {@link #replyTimeoutMs()} ms. One thread at a time.
 */
public final class VhostUserFrontend implements AutoCloseable {
    public static final int DEFAULT_REPLY_TIMEOUT_MS = 10_000;
    /** Protocol features the frontend uses when the backend offers them. */
    public static final long DEFAULT_PROTOCOL_FEATURES = ProtocolFeature.bit(ProtocolFeature.MQ)
            | ProtocolFeature.bit(ProtocolFeature.REPLY_ACK) | ProtocolFeature.bit(ProtocolFeature.CONFIG);
    /** Largest config space a vhost-user GET_CONFIG may carry. */
    public static final int MAX_CONFIG_SIZE = 256;

    /** What {@link #negotiate} settled on. */
    public record Negotiation(long offeredFeatures, long ackedFeatures, long offeredProtocolFeatures,
                              long ackedProtocolFeatures, int queueNum) {
        public boolean has(int virtioBit) {
            return (ackedFeatures & (1L << virtioBit)) != 0;
        }

        public boolean hasProtocol(int bit) {
            return (ackedProtocolFeatures & (1L << bit)) != 0;
        }
    }

    private final UnixSocket socket;
    private final MessageChannel channel;
    private final Message tx = new Message();
    private final Message rx = new Message();
    private final List<DriverQueue> started = new ArrayList<>();
    private long ackedProtocolFeatures;
    private long ackedFeatures;
    private boolean replyAck;
    private boolean useReplyAck = true;
    private int replyTimeoutMs = DEFAULT_REPLY_TIMEOUT_MS;
    private boolean closed;

    private VhostUserFrontend(UnixSocket socket) {
        this.socket = socket;
        this.channel = new MessageChannel(socket);
    }

    public static VhostUserFrontend connect(String path) {
        return new VhostUserFrontend(UnixSocket.connect(path));
    }

    /** Connects, retrying while the socket does not exist yet or refuses, for up to {@code timeoutMs}. */
    public static VhostUserFrontend connect(String path, long timeoutMs) {
        long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
        while (true) {
            try {
                return connect(path);
            } catch (ErrnoException e) {
                if (System.nanoTime() > deadline) {
                    throw e;
                }
                try {
                    Thread.sleep(20);
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                    throw e;
                }
            }
        }
    }

    public UnixSocket socket() {
        return socket;
    }

    public int replyTimeoutMs() {
        return replyTimeoutMs;
    }

    public VhostUserFrontend replyTimeoutMs(int ms) {
        this.replyTimeoutMs = ms;
        return this;
    }

    /** Features sent with the last SET_FEATURES. */
    public long ackedFeatures() {
        return ackedFeatures;
    }

    /** Protocol features sent with the last SET_PROTOCOL_FEATURES. */
    public long ackedProtocolFeatures() {
        return ackedProtocolFeatures;
    }

    /** Whether REPLY_ACK was negotiated (SET_PROTOCOL_FEATURES sent with the bit). */
    public boolean replyAckNegotiated() {
        return replyAck;
    }

    /** Turns the use of NEED_REPLY for typed calls off (or back on); it is on by default. */
    public VhostUserFrontend useReplyAck(boolean on) {
        this.useReplyAck = on;
        return this;
    }

    // ================================================================== raw layer

    /** The outgoing message buffer: {@code tx().begin(code, flags).size(n)}, fill payload, attach fds, {@link #send()}. */
    public Message tx() {
        return tx;
    }

    /** Sends {@link #tx()} as built. */
    public void send() {
        channel.write(tx);
    }

    /** Builds and sends a message with the given payload bytes and fds. */
    public void send(int request, int flags, byte[] payload, int... fds) {
        tx.begin(request, flags).size(payload.length);
        MemorySegment.copy(MemorySegment.ofArray(payload), 0, tx.payloadArea(), 0, payload.length);
        for (int fd : fds) {
            tx.attachFd(fd);
        }
        send();
    }

    /** Sends bytes as they are, no framing (for truncated or garbage-message tests). */
    public void sendBytes(byte[] bytes, int... fds) {
        try (java.lang.foreign.Arena a = java.lang.foreign.Arena.ofConfined()) {
            MemorySegment native_ = a.allocate(Math.max(1, bytes.length));
            MemorySegment.copy(MemorySegment.ofArray(bytes), 0, native_, 0, bytes.length);
            socket.send(native_, bytes.length, fds, fds.length);
        }
    }

    /**
     * Reads the next message from the backend into the receive buffer, waiting at most
     * {@code timeoutMs} (-1 = forever). Returns it, or null on a clean end of stream. Throws
     * {@link ProtocolException} on timeout. Fds it carries stay open until the next receive (or
     * {@link Message#takeFd}).
     */
    public Message receive(int timeoutMs) {
        if (!Poll.readable(socket.fd(), timeoutMs)) {
            throw new ProtocolException("no message from the backend within " + timeoutMs + " ms");
        }
        return channel.read(rx) ? rx : null;
    }

    /** The last received message. */
    public Message rx() {
        return rx;
    }

    /** True if the backend closed the connection (or sends something) within {@code timeoutMs}. */
    public boolean peerClosed(int timeoutMs) {
        if (!Poll.readable(socket.fd(), timeoutMs)) {
            return false;
        }
        try {
            return !channel.read(rx);
        } catch (RuntimeException e) {
            return true;
        }
    }

    /**
     * Sends {@code request} with {@code payload} and fds, waits for the reply, checks that it is a
     * reply to this request and returns it.
     */
    public Message call(int request, int flags, byte[] payload, int... fds) {
        send(request, flags, payload, fds);
        return expectReply(request);
    }

    private Message expectReply(int request) {
        Message m = receive(replyTimeoutMs);
        if (m == null) {
            throw new ProtocolException("backend closed the connection instead of answering " + Request.name(request));
        }
        if (m.request() != request) {
            throw new ProtocolException("expected a reply to " + Request.name(request) + ", got " + m);
        }
        if ((m.flags() & Message.FLAG_REPLY) == 0 || (m.flags() & Message.FLAG_VERSION_MASK) != Message.VERSION) {
            throw new ProtocolException("reply to " + Request.name(request) + " has flags 0x" + Integer.toHexString(m.flags()));
        }
        if (m.fdCount() > 0) {
            m.closeFds();
        }
        return m;
    }

    // ================================================================== typed messages

    /** Starts a message that has a reply of its own (GET_*). */
    private Message begin(int request) {
        return tx.begin(request, 0);
    }

    /** Starts a message without a reply of its own: with REPLY_ACK it asks for an acknowledgement. */
    private Message beginSet(int request) {
        return tx.begin(request, replyAck && useReplyAck ? Message.FLAG_NEED_REPLY : 0);
    }

    /** Sends tx; if it was built with NEED_REPLY, waits for the acknowledgement and checks it. */
    private void sendAcked() {
        boolean ack = (tx.flags() & Message.FLAG_NEED_REPLY) != 0;
        int request = tx.request();
        send();
        if (ack) {
            Message r = expectReply(request);
            r.requireSize(Message.U64_SIZE);
            long status = r.u64(0);
            if (status != 0) {
                throw new NackException(request, status);
            }
        }
    }

    private long getU64(int request) {
        begin(request);
        send();
        Message r = expectReply(request);
        r.requireSize(Message.U64_SIZE);
        return r.u64(0);
    }

    private void setU64(int request, long v) {
        beginSet(request).size(Message.U64_SIZE).putU64(0, v);
        sendAcked();
    }

    public long getFeatures() {
        return getU64(Request.GET_FEATURES);
    }

    public void setFeatures(long features) {
        setU64(Request.SET_FEATURES, features);
        ackedFeatures = features;
    }

    public long getProtocolFeatures() {
        return getU64(Request.GET_PROTOCOL_FEATURES);
    }

    /** SET_PROTOCOL_FEATURES (never with NEED_REPLY: REPLY_ACK is only agreed by this message). */
    public void setProtocolFeatures(long features) {
        begin(Request.SET_PROTOCOL_FEATURES).size(Message.U64_SIZE).putU64(0, features);
        send();
        ackedProtocolFeatures = features;
        replyAck = (features & ProtocolFeature.bit(ProtocolFeature.REPLY_ACK)) != 0;
    }

    public void setOwner() {
        beginSet(Request.SET_OWNER);
        sendAcked();
    }

    public void resetOwner() {
        beginSet(Request.RESET_OWNER);
        sendAcked();
    }

    public int getQueueNum() {
        return (int) getU64(Request.GET_QUEUE_NUM);
    }

    /**
     * GET_FEATURES, GET/SET_PROTOCOL_FEATURES, GET_QUEUE_NUM, SET_OWNER and SET_FEATURES.
     * Acks {@code required | optional} as far as offered, plus VERSION_1 and
     * PROTOCOL_FEATURES when offered; fails if a required bit is not offered.
     */
    public Negotiation negotiate(long required, long optional, long wantedProtocol) {
        long offered = getFeatures();
        long missing = required & ~offered;
        if (missing != 0) {
            throw new IllegalStateException("backend does not offer required features " + Features.virtio(missing)
                    + " (offers " + Features.virtio(offered) + ")");
        }
        long protoBit = 1L << ProtocolFeature.VHOST_USER_F_PROTOCOL_FEATURES;
        long offeredProto = 0;
        long ackedProto = 0;
        if ((offered & protoBit) != 0) {
            offeredProto = getProtocolFeatures();
            ackedProto = offeredProto & wantedProtocol;
            setProtocolFeatures(ackedProto);
        }
        int queueNum = 1;
        if ((ackedProto & ProtocolFeature.bit(ProtocolFeature.MQ)) != 0) {
            queueNum = getQueueNum();
        }
        setOwner();
        long acked = offered & (required | optional | VirtioFeature.bit(VirtioFeature.VERSION_1) | protoBit);
        setFeatures(acked);
        return new Negotiation(offered, acked, offeredProto, ackedProto, queueNum);
    }

    /** GET_CONFIG of {@code size} bytes at {@code offset}; returns the bytes the backend answered. */
    public byte[] getConfig(int offset, int size) {
        if (size <= 0 || size > MAX_CONFIG_SIZE) {
            throw new IllegalArgumentException("config size " + size);
        }
        begin(Request.GET_CONFIG).size(Message.CONFIG_HEADER + size);
        tx.putU32(0, offset);
        tx.putU32(4, size);
        tx.putU32(8, 0);
        tx.payloadArea().asSlice(Message.CONFIG_HEADER, size).fill((byte) 0);
        send();
        Message r = expectReply(Request.GET_CONFIG);
        if (r.size() != Message.CONFIG_HEADER + size) {
            throw new ProtocolException("GET_CONFIG(" + offset + ", " + size + ") failed: reply payload is " + r.size()
                    + " bytes, expected " + (Message.CONFIG_HEADER + size));
        }
        return r.payload(Message.CONFIG_HEADER, size).toArray(JAVA_BYTE);
    }

    /** Reads the virtio-blk config (the 60 bytes through the write-zeroes fields). */
    public BlkDeviceConfig getBlkConfig() {
        return BlkDeviceConfig.parse(getConfig(0, BlkConfig.SIZE));
    }

    /** SET_CONFIG of {@code data} at {@code offset}; {@code flags} 0 = frontend write, 1 = migration. */
    public void setConfig(int offset, byte[] data, int flags) {
        beginSet(Request.SET_CONFIG).size(Message.CONFIG_HEADER + data.length);
        tx.putU32(0, offset);
        tx.putU32(4, data.length);
        tx.putU32(8, flags);
        MemorySegment.copy(MemorySegment.ofArray(data), 0, tx.payloadArea(), Message.CONFIG_HEADER, data.length);
        sendAcked();
    }

    /** Sets the virtio-blk {@code writeback} byte (needs CONFIG_WCE). */
    public void setWriteback(boolean on) {
        setConfig(BlkConfig.WRITEBACK, new byte[] {(byte) (on ? 1 : 0)}, 0);
    }

    /** SET_MEM_TABLE with all regions of {@code memory} (user_addr = our mapping, mmap_offset 0). */
    public void setMemTable(GuestMemory memory) {
        List<GuestMemory.Region> regions = memory.regions();
        beginSet(Request.SET_MEM_TABLE).size(Message.MEM_TABLE_HEADER + Message.MEM_REGION_SIZE * regions.size());
        tx.putU32(0, regions.size());
        tx.putU32(4, 0);
        for (int i = 0; i < regions.size(); i++) {
            GuestMemory.Region r = regions.get(i);
            long o = Message.MEM_TABLE_HEADER + (long) Message.MEM_REGION_SIZE * i;
            tx.putU64(o, r.gpa());
            tx.putU64(o + 8, r.size());
            tx.putU64(o + 16, r.userAddr());
            tx.putU64(o + 24, 0);
            tx.attachFd(r.fd());
        }
        sendAcked();
    }

    private void vringState(int request, int index, int num) {
        (request == Request.GET_VRING_BASE ? begin(request) : beginSet(request)).size(Message.VRING_STATE_SIZE);
        tx.putU32(0, index);
        tx.putU32(4, num);
    }

    public void setVringNum(int index, int num) {
        vringState(Request.SET_VRING_NUM, index, num);
        sendAcked();
    }

    public void setVringBase(int index, int base) {
        vringState(Request.SET_VRING_BASE, index, base);
        sendAcked();
    }

    /** GET_VRING_BASE: stops the ring; returns the backend's next avail index. */
    public int getVringBase(int index) {
        vringState(Request.GET_VRING_BASE, index, 0);
        send();
        Message r = expectReply(Request.GET_VRING_BASE);
        r.requireSize(Message.VRING_STATE_SIZE);
        if (r.u32(0) != index) {
            throw new ProtocolException("GET_VRING_BASE(" + index + ") answered for ring " + r.u32(0));
        }
        return r.u32(4);
    }

    /** SET_VRING_ADDR with user addresses of the three rings. */
    public void setVringAddr(int index, int flags, long desc, long used, long avail, long log) {
        beginSet(Request.SET_VRING_ADDR).size(Message.VRING_ADDR_SIZE);
        tx.putU32(0, index);
        tx.putU32(4, flags);
        tx.putU64(8, desc);
        tx.putU64(16, used);
        tx.putU64(24, avail);
        tx.putU64(32, log);
        sendAcked();
    }

    /** SET_VRING_KICK with {@code fd}, or with the "no fd" bit (polling) when fd < 0. */
    public void setVringKick(int index, int fd) {
        vringFd(Request.SET_VRING_KICK, index, fd);
    }

    public void setVringCall(int index, int fd) {
        vringFd(Request.SET_VRING_CALL, index, fd);
    }

    private void vringFd(int request, int index, int fd) {
        beginSet(request).size(Message.U64_SIZE).putU64(0, (index & 0xFFL) | (fd < 0 ? 0x100L : 0));
        if (fd >= 0) {
            tx.attachFd(fd);
        }
        sendAcked();
    }

    public void setVringEnable(int index, boolean enable) {
        vringState(Request.SET_VRING_ENABLE, index, enable ? 1 : 0);
        sendAcked();
    }

    /**
     * SET_VRING_NUM, SET_VRING_BASE (the queue's avail index), SET_VRING_ADDR, SET_VRING_KICK,
     * SET_VRING_CALL and, if protocol features were negotiated, SET_VRING_ENABLE 1.
     * SET_MEM_TABLE must have been sent.
     */
    public void startQueue(DriverQueue q) {
        setVringNum(q.index(), q.size());
        setVringBase(q.index(), q.availIdx());
        setVringAddr(q.index(), 0, q.descUserAddr(), q.usedUserAddr(), q.availUserAddr(), 0);
        setVringKick(q.index(), q.kickFd());
        setVringCall(q.index(), q.callFd());
        if (ringsNeedEnable()) {
            setVringEnable(q.index(), true);
        }
        started.add(q);
    }

    /** With VHOST_USER_F_PROTOCOL_FEATURES acked, rings start disabled and need SET_VRING_ENABLE. */
    private boolean ringsNeedEnable() {
        return (ackedFeatures & (1L << ProtocolFeature.VHOST_USER_F_PROTOCOL_FEATURES)) != 0;
    }

    /** SET_VRING_ENABLE 0 (if protocol features are in use) and GET_VRING_BASE; returns the base. */
    public int stopQueue(DriverQueue q) {
        started.remove(q);
        if (ringsNeedEnable()) {
            setVringEnable(q.index(), false);
        }
        return getVringBase(q.index());
    }

    /** Queues started with {@link #startQueue} and not stopped yet. */
    public List<DriverQueue> startedQueues() {
        return List.copyOf(started);
    }

    /**
     * Stops any queue still started (best effort) and closes the socket. The guest memory and
     * the queues belong to the caller.
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            for (DriverQueue q : List.copyOf(started)) {
                try {
                    stopQueue(q);
                } catch (RuntimeException e) {
                    break;
                }
            }
        } finally {
            channel.close();
            rx.closeFds(); // fds attached to tx are borrowed from their owners, never closed here
            rx.close();
            tx.close();
        }
    }
}
