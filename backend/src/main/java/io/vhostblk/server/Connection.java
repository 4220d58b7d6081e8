package io.vhostblk.server;

import io.vhostblk.blk.BlkConfig;
import io.vhostblk.blk.BlkDevice;
import io.vhostblk.blk.BlkFeature;
import io.vhostblk.blk.BlkQueue;
import io.vhostblk.io.IoEngine;
import io.vhostblk.io.IoUringEngine;
import io.vhostblk.io.ThreadsEngine;
import io.vhostblk.linux.EventFd;
import io.vhostblk.linux.Libc;
import io.vhostblk.linux.UnixSocket;
import io.vhostblk.memory.GuestMemory;
import io.vhostblk.memory.MemoryRegion;
import io.vhostblk.vhostuser.Message;
import io.vhostblk.vhostuser.MessageChannel;
import io.vhostblk.vhostuser.ProtocolException;
import io.vhostblk.vhostuser.ProtocolFeature;
import io.vhostblk.vhostuser.Request;
import io.vhostblk.virtq.SplitInflight;
import io.vhostblk.virtq.SplitQueue;
import io.vhostblk.virtq.SplitRing;
import io.vhostblk.virtq.VirtioFeature;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * One vhost-user session with a frontend (QEMU): the control thread reads messages, keeps the
 * vring and memory state, and hands started rings to the workers. Every connection starts from
 * scratch (features, memory, rings, workers) and releases all of it when it ends, so nothing
 * leaks into the next one.
 *
 * <p>Failure policy: a message that breaks the protocol gets an error reply when the frontend
 * asked for one (REPLY_ACK) and otherwise ends the connection; it never ends the process.
 */
final class Connection {
    private static final Logger LOG = LogManager.getLogger(Connection.class);
    static final long PROTOCOL_FEATURES = ProtocolFeature.bit(ProtocolFeature.MQ) | ProtocolFeature.bit(ProtocolFeature.REPLY_ACK)
            | ProtocolFeature.bit(ProtocolFeature.CONFIG) | ProtocolFeature.bit(ProtocolFeature.RESET_DEVICE)
            | ProtocolFeature.bit(ProtocolFeature.CONFIGURE_MEM_SLOTS) | ProtocolFeature.bit(ProtocolFeature.STATUS)
            | ProtocolFeature.bit(ProtocolFeature.INFLIGHT_SHMFD);
    static final int MAX_MEM_SLOTS = 509;
    static final int MAX_CONFIG = 256;
    private static final long DRAIN_TIMEOUT_S = 60;

    private final BackendConfig config;
    private final BlkDevice device;
    private final MessageChannel channel;
    private final Message msg = new Message();
    private final Vring[] vrings;
    private final Worker[] workers;
    private GuestMemory memory = GuestMemory.EMPTY;
    private long ackedProtocol;
    private boolean featuresSet;
    private boolean protocolNegotiated;
    private int status;
    /** The frontend's inflight region (SET_INFLIGHT_FD), kept by QEMU across backend restarts. */
    private MemorySegment inflightMap;
    private int inflightQueues;
    private int inflightQueueSize;
    private final Arena arena = Arena.ofConfined();
    private final MemorySegment configBuf = arena.allocate(MAX_CONFIG);

    Connection(BackendConfig config, BlkDevice device, UnixSocket socket) {
        this.config = config;
        this.device = device;
        this.channel = new MessageChannel(socket);
        this.vrings = new Vring[config.numQueues()];
        for (int i = 0; i < vrings.length; i++) {
            vrings[i] = new Vring(i);
        }
        device.ack(0);
        device.setWriteback(true);
        this.workers = new Worker[Math.min(config.workers(), config.numQueues())];
        int perWorker = (config.numQueues() + workers.length - 1) / workers.length;
        int capacity = perWorker * config.maxQueueSize();
        for (int i = 0; i < workers.length; i++) {
            IoEngine engine;
            if (device.image() instanceof io.vhostblk.image.MappedImage mapped) {
                // Formats with their own mapping (qcow2) run on I/O threads whatever --engine says.
                engine = new ThreadsEngine(capacity, config.ioThreads(), "vhostblk-" + i, mapped);
            } else if (config.engine().equals("threads")) {
                engine = new ThreadsEngine(capacity, config.ioThreads(), "vhostblk-" + i);
            } else {
                engine = new IoUringEngine(capacity);
            }
            workers[i] = new Worker(i, device, engine, config.pollUs(), "vhostblk");
            workers[i].start();
        }
    }

    /** Serves messages until the frontend disconnects or breaks the protocol. */
    void serve() {
        try {
            while (true) {
                if (!channel.read(msg)) {
                    LOG.info("frontend disconnected");
                    return;
                }
                dispatch();
            }
        } catch (ProtocolException e) {
            LOG.error("closing the connection: {}", e.getMessage());
        } catch (RuntimeException e) {
            LOG.error("closing the connection after an error", e);
        } catch (InternalError e) {
            // SIGBUS on guest memory, raised by the JVM as InternalError: the frontend truncated a
            // file behind a mapped region. That ends this session, never the backend.
            LOG.error("closing the connection: guest memory faulted ({}); did the frontend shrink a memory file?", e.getMessage());
        } finally {
            msg.closeFds();
            teardown();
        }
    }

    long requests() {
        long n = 0;
        for (Worker w : workers) {
            n += w.requests();
        }
        return n;
    }

    long errors() {
        long n = 0;
        for (Worker w : workers) {
            n += w.errors();
        }
        return n;
    }

    int startedQueues() {
        int n = 0;
        for (Vring v : vrings) {
            n += v.started ? 1 : 0;
        }
        return n;
    }

    /** Wakes {@link #serve} from another thread (SIGTERM). */
    void interrupt() {
        channel.socket().shutdown();
    }

    private boolean replyAck() {
        return (ackedProtocol & ProtocolFeature.bit(ProtocolFeature.REPLY_ACK)) != 0 && msg.needReply();
    }

    private void dispatch() {
        int req = msg.request();
        if (LOG.isDebugEnabled()) {
            LOG.debug("<- {}", msg);
        }
        boolean replied;
        try {
            replied = handle(req);
        } catch (ProtocolException | IllegalArgumentException | IllegalStateException e) {
            if (replyAck() && !hasReplyBody(req)) {
                LOG.warn("{} refused: {}", Request.name(req), e.getMessage());
                msg.closeFds();
                sendU64(req, 1);
                return;
            }
            throw e instanceof ProtocolException pe ? pe : new ProtocolException(Request.name(req) + ": " + e.getMessage());
        }
        msg.closeFds();
        if (!replied && replyAck()) {
            sendU64(req, 0);
        }
    }

    private static boolean hasReplyBody(int req) {
        return switch (req) {
            case Request.GET_FEATURES, Request.GET_PROTOCOL_FEATURES, Request.GET_VRING_BASE, Request.GET_QUEUE_NUM,
                 Request.GET_CONFIG, Request.GET_MAX_MEM_SLOTS, Request.GET_STATUS, Request.GET_INFLIGHT_FD -> true;
            default -> false;
        };
    }

    /** The most fds request {@code req} may carry (vhost-user.rst, "Ancillary data"). */
    private static int maxFds(int req) {
        return switch (req) {
            case Request.SET_MEM_TABLE -> 8;
            // REM_MEM_REG: QEMU sends the region's fd along (libvhost-user closes it).
            case Request.ADD_MEM_REG, Request.REM_MEM_REG, Request.SET_VRING_KICK, Request.SET_VRING_CALL,
                 Request.SET_VRING_ERR, Request.SET_LOG_BASE, Request.SET_LOG_FD, Request.SET_BACKEND_REQ_FD,
                 Request.SET_INFLIGHT_FD -> 1;
            default -> 0;
        };
    }

    /** Requests without a payload. */
    private static boolean takesNoPayload(int req) {
        return switch (req) {
            case Request.GET_FEATURES, Request.GET_PROTOCOL_FEATURES, Request.SET_OWNER, Request.RESET_OWNER,
                 Request.GET_QUEUE_NUM, Request.GET_MAX_MEM_SLOTS, Request.GET_STATUS, Request.RESET_DEVICE -> true;
            default -> false;
        };
    }

    /** Handles the current message; returns true if it sent its own reply. */
    private boolean handle(int req) {
        requireNoFds(maxFds(req));
        if (takesNoPayload(req)) {
            msg.requireSize(0);
        }
        switch (req) {
            case Request.GET_FEATURES -> {
                requireNoFds(0);
                sendU64(req, device.offeredFeatures());
                return true;
            }
            case Request.SET_FEATURES -> {
                msg.requireSize(Message.U64_SIZE);
                requireNoFds(0);
                setFeatures(msg.u64(0));
            }
            case Request.GET_PROTOCOL_FEATURES -> {
                sendU64(req, PROTOCOL_FEATURES);
                return true;
            }
            case Request.SET_PROTOCOL_FEATURES -> {
                msg.requireSize(Message.U64_SIZE);
                long f = msg.u64(0);
                if ((f & ~PROTOCOL_FEATURES) != 0) {
                    throw new ProtocolException("frontend acked protocol features we never offered: 0x" + Long.toHexString(f & ~PROTOCOL_FEATURES));
                }
                ackedProtocol = f;
                protocolNegotiated = true;
            }
            case Request.SET_OWNER -> requireNoFds(0);
            case Request.RESET_OWNER, Request.RESET_DEVICE -> resetDevice();
            case Request.GET_QUEUE_NUM -> {
                sendU64(req, vrings.length);
                return true;
            }
            case Request.GET_MAX_MEM_SLOTS -> {
                sendU64(req, MAX_MEM_SLOTS);
                return true;
            }
            case Request.SET_MEM_TABLE -> setMemTable();
            case Request.ADD_MEM_REG -> addMemReg();
            case Request.REM_MEM_REG -> remMemReg();
            case Request.SET_VRING_NUM -> {
                Vring v = vringFromState();
                requireStopped(v);
                int num = msg.u32(4);
                if (num <= 0 || Integer.bitCount(num) != 1 || num > config.maxQueueSize()) {
                    throw new ProtocolException("vring " + v.index + " size " + Integer.toUnsignedString(num)
                            + " is not a power of two up to " + config.maxQueueSize());
                }
                v.num = num;
            }
            case Request.SET_VRING_ADDR -> setVringAddr();
            case Request.SET_VRING_BASE -> {
                Vring v = vringFromState();
                requireStopped(v);
                int base = msg.u32(4);
                if ((base & ~0xFFFF) != 0) {
                    throw new ProtocolException("vring " + v.index + " base 0x" + Integer.toHexString(base) + " (split rings use 16 bits)");
                }
                v.base = base;
            }
            case Request.GET_VRING_BASE -> {
                Vring v = vringFromState();
                int base = stopVring(v);
                msg.begin(req, Message.FLAG_REPLY).size(Message.VRING_STATE_SIZE);
                msg.putU32(0, v.index);
                msg.putU32(4, base);
                channel.write(msg);
                return true;
            }
            case Request.SET_VRING_KICK -> setVringKick();
            case Request.SET_VRING_CALL -> setVringCall();
            case Request.SET_VRING_ERR -> {
                Vring v = vringForFd();
                int fd = takeOptionalFd();
                Libc.closeQuietly(v.errFd);
                v.errFd = fd;
            }
            case Request.SET_VRING_ENABLE -> {
                if (!protocolNegotiated) {
                    throw new ProtocolException("SET_VRING_ENABLE without VHOST_USER_F_PROTOCOL_FEATURES");
                }
                Vring v = vringFromState();
                int on = msg.u32(4);
                if (on != 0 && on != 1) {
                    throw new ProtocolException("SET_VRING_ENABLE with " + on);
                }
                v.enabled = on == 1;
                if (v.worker != null) {
                    v.worker.wake();
                }
            }
            case Request.GET_CONFIG -> {
                getConfig();
                return true;
            }
            case Request.SET_CONFIG -> setConfig();
            case Request.SET_STATUS -> {
                msg.requireSize(Message.U64_SIZE);
                long s = msg.u64(0);
                if ((s & ~0xFFL) != 0) {
                    throw new ProtocolException("SET_STATUS 0x" + Long.toHexString(s));
                }
                status = (int) s;
            }
            case Request.GET_STATUS -> {
                sendU64(req, status);
                return true;
            }
            case Request.GET_INFLIGHT_FD -> {
                getInflightFd();
                return true;
            }
            case Request.SET_INFLIGHT_FD -> setInflightFd();
            case Request.SET_BACKEND_REQ_FD -> throw new ProtocolException("SET_BACKEND_REQ_FD: BACKEND_REQ was not offered");
            default -> throw new ProtocolException("unsupported request " + Request.name(req));
        }
        return false;
    }

    private void requireNoFds(int allowed) {
        if (msg.fdCount() > allowed) {
            throw new ProtocolException(Request.name(msg.request()) + " carries " + msg.fdCount() + " unexpected file descriptors");
        }
    }

    private void sendU64(int req, long value) {
        msg.begin(req, Message.FLAG_REPLY).size(Message.U64_SIZE);
        msg.putU64(0, value);
        channel.write(msg);
    }

    private Vring vring(long index) {
        if (index < 0 || index >= vrings.length) {
            throw new ProtocolException(Request.name(msg.request()) + " names vring " + index + " of " + vrings.length);
        }
        return vrings[(int) index];
    }

    private Vring vringFromState() {
        msg.requireSize(Message.VRING_STATE_SIZE);
        requireNoFds(0);
        return vring(Integer.toUnsignedLong(msg.u32(0)));
    }

    private static void requireStopped(Vring v) {
        if (v.started) {
            throw new ProtocolException("vring " + v.index + " is running");
        }
    }

    private void setFeatures(long f) {
        long offered = device.offeredFeatures();
        if ((f & ~offered) != 0) {
            throw new ProtocolException("frontend acked features we never offered: 0x" + Long.toHexString(f & ~offered));
        }
        if ((f & VirtioFeature.bit(VirtioFeature.VERSION_1)) == 0) {
            throw new ProtocolException("legacy virtio (no VIRTIO_F_VERSION_1) is not supported");
        }
        for (Vring v : vrings) {
            if (v.started && featuresSet && ((f ^ device.ackedFeatures())
                    & (VirtioFeature.bit(VirtioFeature.RING_EVENT_IDX) | VirtioFeature.bit(VirtioFeature.RING_INDIRECT_DESC))) != 0) {
                throw new ProtocolException("ring features changed while vring " + v.index + " runs");
            }
        }
        device.ack(f);
        featuresSet = true;
        if ((f & ProtocolFeature.bit(ProtocolFeature.VHOST_USER_F_PROTOCOL_FEATURES)) == 0) {
            // Without protocol features every ring is enabled at once (vhost-user.rst "Ring states").
            for (Vring v : vrings) {
                v.enabled = true;
                if (v.worker != null) {
                    v.worker.wake();
                }
            }
        }
    }

    // ------------------------------------------------------------------ memory

    private void setMemTable() {
        msg.requireSizeAtLeast(Message.MEM_TABLE_HEADER);
        int n = msg.u32(0);
        if (n < 1 || n > 8) {
            throw new ProtocolException("SET_MEM_TABLE with " + Integer.toUnsignedString(n) + " regions (1..8)");
        }
        msg.requireSize(Message.MEM_TABLE_HEADER + n * Message.MEM_REGION_SIZE);
        if (msg.fdCount() != n) {
            throw new ProtocolException("SET_MEM_TABLE with " + n + " regions but " + msg.fdCount() + " file descriptors");
        }
        List<MemoryRegion> mapped = new ArrayList<>();
        try {
            for (int i = 0; i < n; i++) {
                long o = Message.MEM_TABLE_HEADER + (long) i * Message.MEM_REGION_SIZE;
                mapped.add(mapRegion(o, msg.fd(i)));
            }
            replaceMemory(GuestMemory.of(mapped));
        } catch (RuntimeException e) {
            mapped.forEach(MemoryRegion::unmap);
            throw e instanceof ProtocolException ? e : new ProtocolException("SET_MEM_TABLE: " + e.getMessage());
        }
    }

    private MemoryRegion mapRegion(long off, int fd) {
        long gpa = msg.u64(off);
        long size = msg.u64(off + 8);
        long uva = msg.u64(off + 16);
        long mmapOffset = msg.u64(off + 24);
        if (size == 0 || size > (1L << 48) || Long.compareUnsigned(mmapOffset, 1L << 48) > 0) {
            throw new ProtocolException(String.format("memory region of size 0x%x at offset 0x%x", size, mmapOffset));
        }
        return MemoryRegion.map(gpa, size, uva, mmapOffset, fd);
    }

    private void addMemReg() {
        msg.requireSize(Message.SINGLE_REGION_SIZE);
        if (msg.fdCount() != 1) {
            throw new ProtocolException("ADD_MEM_REG needs exactly one file descriptor, got " + msg.fdCount());
        }
        if (memory.regionCount() >= MAX_MEM_SLOTS) {
            throw new ProtocolException("ADD_MEM_REG beyond " + MAX_MEM_SLOTS + " slots");
        }
        MemoryRegion r = mapRegion(8, msg.fd(0));
        try {
            replaceMemory(memory.with(r), null);
        } catch (RuntimeException e) {
            r.unmap();
            throw e instanceof ProtocolException ? e : new ProtocolException("ADD_MEM_REG: " + e.getMessage());
        }
    }

    private void remMemReg() {
        msg.requireSize(Message.SINGLE_REGION_SIZE);
        long gpa = msg.u64(8);
        long size = msg.u64(16);
        long uva = msg.u64(24);
        for (MemoryRegion r : memory.regions()) {
            if (r.sameAs(gpa, size, uva)) {
                replaceMemory(memory.without(r), r);
                return;
            }
        }
        throw new ProtocolException(String.format("REM_MEM_REG of unknown region gpa=0x%x size=0x%x", gpa, size));
    }

    private void replaceMemory(GuestMemory next) {
        GuestMemory old = memory;
        replaceMemory(next, null);
        old.unmapAll();
    }

    /**
     * Swaps the memory table with every running ring quiesced: rings are stopped (in-flight
     * requests complete), the table swapped, then the rings restart with the new table. Only
     * then is {@code unmapAfter} unmapped, so no worker can touch a stale mapping.
     *
     * <p>A table that no longer holds a running ring is refused before anything changes: the
     * ring could not restart, and the caller unmaps the refused table's regions.
     */
    private void replaceMemory(GuestMemory next, MemoryRegion unmapAfter) {
        for (Vring v : vrings) {
            if (v.started && !ringInside(next, v)) {
                throw new ProtocolException("vring " + v.index + " runs and would lie outside the new memory table");
            }
        }
        List<Vring> running = new ArrayList<>();
        for (Vring v : vrings) {
            if (v.started) {
                v.base = detach(v);
                running.add(v);
            }
        }
        memory = next;
        if (unmapAfter != null) {
            unmapAfter.unmap();
        }
        for (Vring v : running) {
            attach(v);
        }
    }

    // ------------------------------------------------------------------ vrings

    private void setVringAddr() {
        msg.requireSize(Message.VRING_ADDR_SIZE);
        requireNoFds(0);
        Vring v = vring(Integer.toUnsignedLong(msg.u32(0)));
        int flags = msg.u32(4);
        long desc = msg.u64(8);
        long used = msg.u64(16);
        long avail = msg.u64(24);
        if ((flags & 1) != 0) {
            throw new ProtocolException("VHOST_VRING_F_LOG requested but dirty logging was not offered");
        }
        if ((desc & 15) != 0 || (avail & 1) != 0 || (used & 3) != 0) {
            throw new ProtocolException(String.format("vring %d addresses misaligned (desc 0x%x avail 0x%x used 0x%x)", v.index, desc, avail, used));
        }
        if (v.started) {
            if (v.descUser == desc && v.usedUser == used && v.availUser == avail) {
                return;
            }
            throw new ProtocolException("vring " + v.index + " moved while running");
        }
        v.descUser = desc;
        v.usedUser = used;
        v.availUser = avail;
        v.addrFlags = flags;
        v.addrSet = true;
    }

    private Vring vringForFd() {
        msg.requireSize(Message.U64_SIZE);
        long u = msg.u64(0);
        if ((u & ~0x1FFL) != 0) {
            throw new ProtocolException(Request.name(msg.request()) + " with reserved bits set: 0x" + Long.toHexString(u));
        }
        Vring v = vring(u & 0xFF);
        boolean nofd = (u & 0x100) != 0;
        if (nofd ? msg.fdCount() != 0 : msg.fdCount() != 1) {
            throw new ProtocolException(Request.name(msg.request()) + " for vring " + v.index + ": "
                    + (nofd ? "NOFD flag but a file descriptor came" : "no file descriptor"));
        }
        return v;
    }

    private int takeOptionalFd() {
        return msg.fdCount() == 1 ? msg.takeFd(0) : -1;
    }

    private void setVringKick() {
        Vring v = vringForFd();
        int fd = takeOptionalFd();
        if (v.started) {
            v.base = detach(v);
        }
        Libc.closeQuietly(v.kickFd);
        v.kickFd = fd;
        attach(v);
        if (!featuresSet || (device.ackedFeatures() & ProtocolFeature.bit(ProtocolFeature.VHOST_USER_F_PROTOCOL_FEATURES)) == 0) {
            v.enabled = true;
        }
    }

    private void setVringCall() {
        Vring v = vringForFd();
        int fd = takeOptionalFd();
        int old = v.callFd;
        v.callFd = fd;
        if (v.queue != null) {
            BlkQueue q = v.queue;
            await(v.worker.execute(() -> {
                q.setCallFd(fd);
                if (fd >= 0) {
                    // An interrupt may have been raised on the old fd while the frontend swapped it.
                    EventFd.signal(fd);
                }
            }), "switch the call fd of vring " + v.index);
        }
        Libc.closeQuietly(old);
    }

    private static boolean ringInside(GuestMemory m, Vring v) {
        return m.sliceUser(v.descUser, SplitRing.descTableSize(v.num)) != null
                && m.sliceUser(v.availUser, SplitRing.availSize(v.num)) != null
                && m.sliceUser(v.usedUser, SplitRing.usedSize(v.num)) != null;
    }

    /** Starts the ring: builds its runtime over the current memory and hands it to a worker. */
    private void attach(Vring v) {
        if (v.num == 0 || !v.addrSet) {
            throw new ProtocolException("vring " + v.index + " started before its size and addresses were set");
        }
        MemorySegment desc = memory.sliceUser(v.descUser, SplitRing.descTableSize(v.num));
        MemorySegment avail = memory.sliceUser(v.availUser, SplitRing.availSize(v.num));
        MemorySegment used = memory.sliceUser(v.usedUser, SplitRing.usedSize(v.num));
        if (desc == null || avail == null || used == null) {
            throw new ProtocolException("vring " + v.index + " lies outside guest memory");
        }
        long f = device.ackedFeatures();
        SplitQueue ring = new SplitQueue(v.num, desc, avail, used, memory,
                VirtioFeature.has(f, VirtioFeature.RING_EVENT_IDX), VirtioFeature.has(f, VirtioFeature.RING_INDIRECT_DESC), v.base);
        SplitInflight tracking = null;
        if (inflightMap != null && v.index < inflightQueues) {
            if (v.num > inflightQueueSize) {
                throw new ProtocolException("vring " + v.index + " has " + v.num + " entries but the inflight region holds " + inflightQueueSize);
            }
            long per = SplitInflight.regionSize(inflightQueueSize);
            tracking = new SplitInflight(inflightMap.asSlice(per * v.index, per), v.num);
            int base = tracking.recover(ring.usedIdx(), v.base);
            if (base != v.base) {
                LOG.info("vring {}: inflight region moves the ring base from {} to {}", v.index, v.base, base);
            }
            ring.setLastAvail(base);
        }
        BlkQueue q = new BlkQueue(v.index, ring, v.kickFd, v.callFd, tracking);
        Worker w = workers[v.index % workers.length];
        await(w.attach(v, q), "start vring " + v.index);
        v.queue = q;
        v.worker = w;
        v.started = true;
        w.wake();
    }

    /** Stops the ring after its in-flight requests complete; returns the next avail index. */
    private int detach(Vring v) {
        BlkQueue q = v.queue;
        int base = await(v.worker.detach(q), "stop vring " + v.index);
        q.release();
        v.queue = null;
        v.worker = null;
        v.started = false;
        return base;
    }

    private int stopVring(Vring v) {
        int base = v.started ? detach(v) : v.base;
        v.base = base;
        Libc.closeQuietly(v.kickFd);
        Libc.closeQuietly(v.callFd);
        v.kickFd = -1;
        v.callFd = -1;
        return base;
    }

    private static <T> T await(CompletableFuture<T> f, String what) {
        try {
            return f.get(DRAIN_TIMEOUT_S, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while waiting to " + what);
        } catch (ExecutionException e) {
            throw new IllegalStateException("failed to " + what + ": " + e.getCause(), e.getCause());
        } catch (TimeoutException e) {
            throw new IllegalStateException("in-flight I/O did not finish within " + DRAIN_TIMEOUT_S + " s; cannot " + what);
        }
    }

    private void resetDevice() {
        for (Vring v : vrings) {
            if (v.started) {
                detach(v);
            }
            v.reset();
        }
        device.ack(0);
        device.setWriteback(true);
        featuresSet = false;
        status = 0;
    }

    // ------------------------------------------------------------------ inflight tracking

    static final int F_ADD_SEALS = 1033;
    static final int F_SEAL_SEAL = 1;
    static final int F_SEAL_SHRINK = 2;
    static final int F_SEAL_GROW = 4;

    /** GET_INFLIGHT_FD: a new zeroed, sealed memfd sized for the frontend's queues. */
    private void getInflightFd() {
        msg.requireSize(Message.INFLIGHT_SIZE);
        int queues = msg.u32(16) & 0xFFFF;
        int queueSize = (msg.u32(16) >>> 16) & 0xFFFF;
        if (queues < 1 || queues > vrings.length || queueSize < 1 || queueSize > config.maxQueueSize()) {
            throw new ProtocolException("GET_INFLIGHT_FD for " + queues + " queues of " + queueSize + " entries");
        }
        long size = SplitInflight.regionSize(queueSize) * queues;
        int fd = Libc.memfdCreate("vhostblk-inflight", Libc.MFD_CLOEXEC | Libc.MFD_ALLOW_SEALING);
        try {
            Libc.ftruncate(fd, size);
            Libc.fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
            msg.begin(Request.GET_INFLIGHT_FD, Message.FLAG_REPLY).size(Message.INFLIGHT_SIZE);
            msg.putU64(0, size);
            msg.putU64(8, 0);
            msg.putU32(16, queues | (queueSize << 16));
            msg.putU32(20, 0);
            msg.attachFd(fd);
            channel.write(msg);
        } finally {
            Libc.closeQuietly(fd);
        }
    }

    /** SET_INFLIGHT_FD: map the region (kept by the frontend across our restarts). */
    private void setInflightFd() {
        msg.requireSize(Message.INFLIGHT_SIZE);
        if (msg.fdCount() != 1) {
            throw new ProtocolException("SET_INFLIGHT_FD needs one file descriptor, got " + msg.fdCount());
        }
        long size = msg.u64(0);
        long offset = msg.u64(8);
        int queues = msg.u32(16) & 0xFFFF;
        int queueSize = (msg.u32(16) >>> 16) & 0xFFFF;
        if (queues < 1 || queueSize < 1 || size < SplitInflight.regionSize(queueSize) * queues
                || size > (1L << 32) || offset < 0 || (offset & 4095) != 0) {
            throw new ProtocolException("SET_INFLIGHT_FD of " + size + " bytes at " + offset + " for " + queues
                    + " queues of " + queueSize);
        }
        for (Vring v : vrings) {
            if (v.started) {
                throw new ProtocolException("SET_INFLIGHT_FD while vring " + v.index + " runs");
            }
        }
        dropInflight();
        inflightMap = Libc.mmap(size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, msg.fd(0), offset);
        inflightQueues = queues;
        inflightQueueSize = queueSize;
    }

    private void dropInflight() {
        if (inflightMap != null) {
            Libc.munmap(inflightMap);
            inflightMap = null;
        }
    }

    // ------------------------------------------------------------------ config

    private void getConfig() {
        msg.requireSizeAtLeast(Message.CONFIG_HEADER);
        int offset = msg.u32(0);
        int size = msg.u32(4);
        if (offset < 0 || size <= 0 || offset > MAX_CONFIG || size > MAX_CONFIG - offset
                || msg.size() != Message.CONFIG_HEADER + size) {
            throw new ProtocolException("GET_CONFIG of " + Integer.toUnsignedString(size) + " bytes at " + Integer.toUnsignedString(offset));
        }
        configBuf.fill((byte) 0);
        device.writeConfig(configBuf);
        int flags = msg.u32(8);
        msg.begin(Request.GET_CONFIG, Message.FLAG_REPLY).size(Message.CONFIG_HEADER + size);
        msg.putU32(0, offset);
        msg.putU32(4, size);
        msg.putU32(8, flags);
        MemorySegment.copy(configBuf, offset, msg.payloadArea(), Message.CONFIG_HEADER, size);
        channel.write(msg);
    }

    private void setConfig() {
        msg.requireSizeAtLeast(Message.CONFIG_HEADER);
        int offset = msg.u32(0);
        int size = msg.u32(4);
        int flags = msg.u32(8);
        if (msg.size() != Message.CONFIG_HEADER + size || size < 0) {
            throw new ProtocolException("SET_CONFIG payload size does not match its config size " + size);
        }
        if (offset != BlkConfig.WRITEBACK || size != 1 || flags != 0) {
            throw new ProtocolException("SET_CONFIG may only write the writeback byte (offset " + offset + ", size " + size + ", flags " + flags + ")");
        }
        if (!device.acked(BlkFeature.CONFIG_WCE)) {
            throw new ProtocolException("SET_CONFIG writeback without VIRTIO_BLK_F_CONFIG_WCE");
        }
        int wb = msg.payload(Message.CONFIG_HEADER, 1).get(java.lang.foreign.ValueLayout.JAVA_BYTE, 0);
        if (wb != 0 && wb != 1) {
            throw new ProtocolException("writeback must be 0 or 1, not " + wb);
        }
        device.setWriteback(wb == 1);
        LOG.info("guest switched the write cache to {}", wb == 1 ? "writeback" : "writethrough");
    }

    // ------------------------------------------------------------------ teardown

    /** Drains every ring, flushes the image, releases memory, fds and workers. */
    private void teardown() {
        for (Vring v : vrings) {
            try {
                if (v.started) {
                    detach(v);
                }
            } catch (RuntimeException e) {
                LOG.error("stopping vring {}: {}", v.index, e.getMessage());
            }
            v.reset();
        }
        for (Worker w : workers) {
            w.shutdown();
        }
        if (!device.readOnly()) {
            int r = device.image() instanceof io.vhostblk.image.MappedImage mapped
                    ? mapped.flush() : Libc.fdatasyncRaw(device.image().dataFd(false));
            if (r < 0) {
                LOG.error("flushing the image: {}", Libc.strerror(-r));
            }
        }
        memory.unmapAll();
        memory = GuestMemory.EMPTY;
        dropInflight();
        channel.close();
        arena.close();
        msg.closeFds();
        msg.close();
    }
}
