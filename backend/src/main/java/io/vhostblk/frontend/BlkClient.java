package io.vhostblk.frontend;

import io.vhostblk.blk.BlkFeature;
import io.vhostblk.blk.BlkRequest;
import io.vhostblk.virtq.SplitRing;
import io.vhostblk.virtq.VirtioFeature;

import java.util.ArrayList;
import java.util.List;

/**
 * A ready-to-use virtio-blk "guest" on a vhost-user-blk socket: connects, negotiates, reads the
 * config, builds guest memory sized for the queues and their request slots, starts the queues and
 * gives one {@link BlkDriver} per queue. {@link #close} stops the rings (GET_VRING_BASE) and
 * releases everything.
 *
 * <p>Memory layout: region 0 holds rings, indirect tables, request slots and
 * {@code extraBytes} of slack; with {@code extraRegions > 0} that many further regions of
 * {@code extraBytes} each follow back to back in guest-physical space (for buffers that straddle
 * a region boundary, see {@link GuestMemory#allocateStraddling}).
 */
public final class BlkClient implements AutoCloseable {
    /** virtio-blk features the client acks when offered (besides required ones). */
    public static final long DEFAULT_BLK_FEATURES = bits(BlkFeature.SIZE_MAX, BlkFeature.SEG_MAX, BlkFeature.GEOMETRY,
            BlkFeature.RO, BlkFeature.BLK_SIZE, BlkFeature.FLUSH, BlkFeature.TOPOLOGY, BlkFeature.MQ,
            BlkFeature.DISCARD, BlkFeature.WRITE_ZEROES);

    public record Options(int queues, int queueSize, boolean eventIdx, boolean indirect, boolean poll,
                          int slotsPerQueue, int maxDataBytes, int dataSegments, long extraBytes, int extraRegions,
                          long optionalFeatures, boolean populate) {
        public static Options defaults() {
            return new Options(1, 128, false, false, false, 16, 128 * 1024, 1, 1 << 20, 0, 0, false);
        }

        public Options queues(int n) {
            return new Options(n, queueSize, eventIdx, indirect, poll, slotsPerQueue, maxDataBytes, dataSegments, extraBytes, extraRegions, optionalFeatures, populate);
        }

        public Options queueSize(int n) {
            return new Options(queues, n, eventIdx, indirect, poll, slotsPerQueue, maxDataBytes, dataSegments, extraBytes, extraRegions, optionalFeatures, populate);
        }

        public Options eventIdx(boolean on) {
            return new Options(queues, queueSize, on, indirect, poll, slotsPerQueue, maxDataBytes, dataSegments, extraBytes, extraRegions, optionalFeatures, populate);
        }

        public Options indirect(boolean on) {
            return new Options(queues, queueSize, eventIdx, on, poll, slotsPerQueue, maxDataBytes, dataSegments, extraBytes, extraRegions, optionalFeatures, populate);
        }

        public Options poll(boolean on) {
            return new Options(queues, queueSize, eventIdx, indirect, on, slotsPerQueue, maxDataBytes, dataSegments, extraBytes, extraRegions, optionalFeatures, populate);
        }

        public Options slots(int n, int maxData) {
            return new Options(queues, queueSize, eventIdx, indirect, poll, n, maxData, dataSegments, extraBytes, extraRegions, optionalFeatures, populate);
        }

        public Options dataSegments(int n) {
            return new Options(queues, queueSize, eventIdx, indirect, poll, slotsPerQueue, maxDataBytes, n, extraBytes, extraRegions, optionalFeatures, populate);
        }

        public Options extra(long bytes, int regions) {
            return new Options(queues, queueSize, eventIdx, indirect, poll, slotsPerQueue, maxDataBytes, dataSegments, bytes, regions, optionalFeatures, populate);
        }

        /** Additional virtio feature bits to ack when offered (e.g. CONFIG_WCE). */
        public Options optionalFeatures(long bits) {
            return new Options(queues, queueSize, eventIdx, indirect, poll, slotsPerQueue, maxDataBytes, dataSegments, extraBytes, extraRegions, bits, populate);
        }

        public Options populate(boolean on) {
            return new Options(queues, queueSize, eventIdx, indirect, poll, slotsPerQueue, maxDataBytes, dataSegments, extraBytes, extraRegions, optionalFeatures, on);
        }
    }

    private final VhostUserFrontend frontend;
    private final VhostUserFrontend.Negotiation negotiation;
    private final BlkDeviceConfig config;
    private final GuestMemory memory;
    private final List<DriverQueue> queues = new ArrayList<>();
    private final List<BlkDriver> drivers = new ArrayList<>();
    private boolean closed;

    private BlkClient(VhostUserFrontend frontend, VhostUserFrontend.Negotiation negotiation, BlkDeviceConfig config,
                      GuestMemory memory) {
        this.frontend = frontend;
        this.negotiation = negotiation;
        this.config = config;
        this.memory = memory;
    }

    public static BlkClient open(String socketPath, Options o) {
        return open(VhostUserFrontend.connect(socketPath, 5_000), o);
    }

    /** Sets up a client on an already connected frontend (closed with the client, or on failure). */
    public static BlkClient open(VhostUserFrontend fe, Options o) {
        BlkClient c = null;
        GuestMemory mem = null;
        try {
            long required = VirtioFeature.bit(VirtioFeature.VERSION_1);
            if (o.eventIdx()) {
                required |= VirtioFeature.bit(VirtioFeature.RING_EVENT_IDX);
            }
            if (o.indirect()) {
                required |= VirtioFeature.bit(VirtioFeature.RING_INDIRECT_DESC);
            }
            if (o.queues() > 1) {
                required |= VirtioFeature.bit(BlkFeature.MQ);
            }
            var n = fe.negotiate(required, DEFAULT_BLK_FEATURES | o.optionalFeatures(), VhostUserFrontend.DEFAULT_PROTOCOL_FEATURES);
            if (!n.hasProtocol(io.vhostblk.vhostuser.ProtocolFeature.CONFIG)) {
                throw new IllegalStateException("backend does not offer the CONFIG protocol feature");
            }
            if (o.queues() > n.queueNum()) {
                throw new IllegalStateException("backend supports " + n.queueNum() + " queues, " + o.queues() + " asked");
            }
            BlkDeviceConfig cfg = fe.getBlkConfig();
            if (n.has(BlkFeature.MQ) && o.queues() > cfg.numQueues()) {
                throw new IllegalStateException("device config has num_queues " + cfg.numQueues() + ", " + o.queues() + " asked");
            }

            int indirectMax = o.indirect() ? o.dataSegments() + 2 : 0;
            long perQueue = 3 * GuestMemory.PAGE + SplitRing.descTableSize(o.queueSize()) + SplitRing.availSize(o.queueSize())
                    + SplitRing.usedSize(o.queueSize())
                    + (long) o.queueSize() * indirectMax * SplitRing.DESC_SIZE + GuestMemory.PAGE
                    + (long) BlkDriver.META_SIZE * o.slotsPerQueue() + GuestMemory.PAGE
                    + GuestMemory.alignUp(Math.max(o.maxDataBytes(), BlkRequest.SECTOR_SIZE), GuestMemory.PAGE) * o.slotsPerQueue()
                    + GuestMemory.PAGE;
            long[] sizes = new long[1 + o.extraRegions()];
            sizes[0] = perQueue * o.queues() + o.extraBytes();
            for (int i = 1; i < sizes.length; i++) {
                sizes[i] = o.extraBytes();
            }
            mem = GuestMemory.create(GuestMemory.DEFAULT_GPA_BASE, o.populate(), sizes);
            c = new BlkClient(fe, n, cfg, mem);
            fe.setMemTable(mem);
            for (int i = 0; i < o.queues(); i++) {
                DriverQueue q = new DriverQueue(mem, i, DriverQueue.Options.of(o.queueSize()).withEventIdx(o.eventIdx())
                        .withIndirect(indirectMax).withPoll(o.poll()));
                c.queues.add(q);
                BlkDriver d = new BlkDriver(q, o.slotsPerQueue(), o.maxDataBytes()).dataSegments(o.dataSegments()).indirect(o.indirect());
                c.drivers.add(d);
                fe.startQueue(q);
            }
            return c;
        } catch (RuntimeException e) {
            if (c != null) {
                c.close();
            } else {
                fe.close();
                if (mem != null) {
                    mem.close();
                }
            }
            throw e;
        }
    }

    public VhostUserFrontend frontend() {
        return frontend;
    }

    public VhostUserFrontend.Negotiation negotiation() {
        return negotiation;
    }

    public BlkDeviceConfig config() {
        return config;
    }

    public GuestMemory memory() {
        return memory;
    }

    public int queueCount() {
        return queues.size();
    }

    public DriverQueue queue(int i) {
        return queues.get(i);
    }

    public BlkDriver driver(int i) {
        return drivers.get(i);
    }

    /** Stops the started queues (GET_VRING_BASE), closes the connection, the eventfds and the memory. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            frontend.close();
        } finally {
            for (DriverQueue q : queues) {
                q.close();
            }
            memory.close();
        }
    }

    private static long bits(int... b) {
        long v = 0;
        for (int x : b) {
            v |= 1L << x;
        }
        return v;
    }
}
