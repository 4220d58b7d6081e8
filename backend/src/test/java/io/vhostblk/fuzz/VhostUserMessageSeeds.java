package io.vhostblk.fuzz;

import io.vhostblk.blk.BlkRequest;
import io.vhostblk.fuzz.VhostUserMessageFuzzTest.Fd;
import io.vhostblk.fuzz.VhostUserMessageFuzzTest.Msg;
import io.vhostblk.vhostuser.Message;
import io.vhostblk.vhostuser.ProtocolFeature;
import io.vhostblk.vhostuser.Request;
import io.vhostblk.virtq.VirtioFeature;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static io.vhostblk.virtq.SplitRing.F_NEXT;
import static io.vhostblk.virtq.SplitRing.F_WRITE;

/**
 * The seed corpus of {@link VhostUserMessageFuzzTest}: complete valid sessions (negotiation,
 * memory table, a ring that serves a GET_ID request, memory table changes while it runs,
 * teardown) and one session per malformed case of the issue (wrong sizes, missing and extra fds,
 * overlapping regions, rings outside memory, queue index out of range, non-power-of-two sizes,
 * regions larger than their fd, lying headers, unknown requests).
 */
final class VhostUserMessageSeeds {
    /** Frontend user address of the seeds' guest memory region 0 (any value works: it is only a number). */
    static final long UVA = 0x7F00_0000_0000L;
    static final int PAGES = 16;
    static final long REGION = PAGES * 4096L;
    static final long PROTOCOL = bits(ProtocolFeature.MQ, ProtocolFeature.REPLY_ACK, ProtocolFeature.CONFIG,
            ProtocolFeature.RESET_DEVICE, ProtocolFeature.CONFIGURE_MEM_SLOTS, ProtocolFeature.STATUS);
    static final long FEATURES = bits(VirtioFeature.VERSION_1, ProtocolFeature.VHOST_USER_F_PROTOCOL_FEATURES);

    private VhostUserMessageSeeds() {
    }

    static long bits(int... b) {
        long v = 0;
        for (int x : b) {
            v |= 1L << x;
        }
        return v;
    }

    static byte[] u64(long v) {
        return new FuzzInput.Writer().u64(v).toByteArray();
    }

    static byte[] state(int index, int num) {
        return new FuzzInput.Writer().u32(index).u32(num).toByteArray();
    }

    static byte[] addr(int index, long desc, long used, long avail) {
        return new FuzzInput.Writer().u32(index).u32(0).u64(desc).u64(used).u64(avail).u64(0).toByteArray();
    }

    /** SET_MEM_TABLE payload; regions as (gpa, size, uva, mmap_offset) quadruples. */
    static byte[] memTable(long... r) {
        FuzzInput.Writer w = new FuzzInput.Writer().u32(r.length / 4).u32(0);
        for (long v : r) {
            w.u64(v);
        }
        return w.toByteArray();
    }

    /** ADD_MEM_REG / REM_MEM_REG payload. */
    static byte[] region(long gpa, long size, long uva, long offset) {
        return new FuzzInput.Writer().u64(0).u64(gpa).u64(size).u64(uva).u64(offset).toByteArray();
    }

    static byte[] config(int offset, int size) {
        return new FuzzInput.Writer().u32(offset).u32(size).u32(0).bytes(new byte[size]).toByteArray();
    }

    /**
     * Guest memory content for a 16-entry ring at offset 0 (avail 0x100, used 0x128) with one
     * GET_ID request published: header 0x200, 20-byte id buffer 0x300, status 0x400.
     */
    static byte[] ringWithGetId() {
        byte[] m = new byte[0x410];
        put(m, 0, SplitChainSeeds.Builder.desc(0x200, 16, F_NEXT, 1));
        put(m, 16, SplitChainSeeds.Builder.desc(0x300, 20, F_NEXT | F_WRITE, 2));
        put(m, 32, SplitChainSeeds.Builder.desc(0x400, 1, F_WRITE, 0));
        put(m, 0x100, new FuzzInput.Writer().u16(0).u16(1).u16(0).toByteArray());
        put(m, 0x200, new FuzzInput.Writer().u32(BlkRequest.T_GET_ID).u32(0).u64(0).toByteArray());
        m[0x400] = (byte) 0xEE;
        return m;
    }

    private static void put(byte[] m, int off, byte[] b) {
        System.arraycopy(b, 0, m, off, b.length);
    }

    /** GET/SET_FEATURES, protocol features with REPLY_ACK, owner, queue number and config. */
    static List<Msg> negotiate(long features) {
        List<Msg> l = new ArrayList<>();
        l.add(Msg.of(Request.GET_FEATURES, new byte[0]));
        l.add(Msg.of(Request.GET_PROTOCOL_FEATURES, new byte[0]));
        l.add(Msg.of(Request.SET_PROTOCOL_FEATURES, u64(PROTOCOL)));
        l.add(Msg.of(Request.GET_QUEUE_NUM, new byte[0]));
        l.add(Msg.acked(Request.SET_OWNER, new byte[0]));
        l.add(Msg.acked(Request.SET_FEATURES, u64(features)));
        l.add(Msg.of(Request.GET_CONFIG, config(0, 60)));
        return l;
    }

    /** Memory table of one region at gpa 0 backed by a memfd holding {@link #ringWithGetId}. */
    static Msg memTableWithRing() {
        return Msg.acked(Request.SET_MEM_TABLE, memTable(0, REGION, UVA, 0), Fd.mem(PAGES, ringWithGetId()));
    }

    /** NUM, BASE, ADDR, CALL, KICK (and ENABLE with protocol features) for ring {@code q} at UVA + 0. */
    static List<Msg> startRing(int q, boolean enable) {
        List<Msg> l = new ArrayList<>();
        l.add(Msg.acked(Request.SET_VRING_NUM, state(q, 16)));
        l.add(Msg.acked(Request.SET_VRING_BASE, state(q, 0)));
        l.add(Msg.acked(Request.SET_VRING_ADDR, addr(q, UVA, UVA + 0x128, UVA + 0x100)));
        l.add(Msg.acked(Request.SET_VRING_CALL, u64(q), Fd.event()));
        l.add(Msg.acked(Request.SET_VRING_KICK, u64(q), Fd.event()));
        if (enable) {
            l.add(Msg.acked(Request.SET_VRING_ENABLE, state(q, 1)));
        }
        return l;
    }

    static byte[] seq(List<Msg> msgs) {
        return VhostUserMessageFuzzTest.encode(msgs);
    }

    @SafeVarargs
    static List<Msg> concat(List<Msg>... parts) {
        List<Msg> l = new ArrayList<>();
        for (List<Msg> p : parts) {
            l.addAll(p);
        }
        return l;
    }

    static Map<String, byte[]> all() {
        Map<String, byte[]> m = new LinkedHashMap<>();
        List<Msg> running = concat(negotiate(FEATURES), List.of(memTableWithRing()), startRing(0, true));

        m.put("ok-setup-get-id-and-stop", seq(concat(running,
                List.of(Msg.of(Request.GET_VRING_BASE, state(0, 0))))));
        m.put("ok-memory-table-changes-while-the-ring-runs", seq(concat(running, List.of(
                Msg.acked(Request.SET_MEM_TABLE, memTable(0, REGION, UVA, 0, 0x100000, REGION, UVA + 0x100000, 0),
                        Fd.mem(PAGES, ringWithGetId()), Fd.mem(PAGES)),
                Msg.acked(Request.ADD_MEM_REG, region(0x400000, REGION, UVA + 0x400000, 0), Fd.mem(PAGES)),
                Msg.acked(Request.REM_MEM_REG, region(0x100000, REGION, UVA + 0x100000, 0)),
                Msg.acked(Request.SET_VRING_ENABLE, state(0, 0)),
                Msg.of(Request.GET_VRING_BASE, state(0, 0)),
                Msg.acked(Request.RESET_DEVICE, new byte[0])))));
        m.put("ok-legacy-no-protocol-features-polled-ring", seq(List.of(
                Msg.of(Request.GET_FEATURES, new byte[0]),
                Msg.of(Request.SET_OWNER, new byte[0]),
                Msg.of(Request.SET_FEATURES, u64(bits(VirtioFeature.VERSION_1))),
                Msg.of(Request.SET_MEM_TABLE, memTable(0, REGION, UVA, 0), Fd.mem(PAGES, ringWithGetId())),
                Msg.of(Request.SET_VRING_NUM, state(0, 16)),
                Msg.of(Request.SET_VRING_ADDR, addr(0, UVA, UVA + 0x128, UVA + 0x100)),
                Msg.of(Request.SET_VRING_KICK, u64(0x100)),
                Msg.of(Request.GET_VRING_BASE, state(0, 0)))));
        m.put("ok-two-rings-event-idx-indirect-status", seq(concat(
                negotiate(FEATURES | bits(VirtioFeature.RING_EVENT_IDX, VirtioFeature.RING_INDIRECT_DESC)),
                List.of(Msg.acked(Request.SET_MEM_TABLE, memTable(0, REGION, UVA, 0, REGION, REGION, UVA + REGION, 0),
                        Fd.mem(PAGES, ringWithGetId()), Fd.mem(PAGES))),
                startRing(0, true),
                List.of(Msg.acked(Request.SET_VRING_NUM, state(1, 16)),
                        Msg.acked(Request.SET_VRING_ADDR, addr(1, UVA + REGION, UVA + REGION + 0x128, UVA + REGION + 0x100)),
                        Msg.acked(Request.SET_VRING_KICK, u64(0x101)),
                        Msg.acked(Request.SET_VRING_ENABLE, state(1, 1)),
                        Msg.acked(Request.SET_STATUS, u64(0x0F)),
                        Msg.of(Request.GET_STATUS, new byte[0]),
                        Msg.of(Request.GET_MAX_MEM_SLOTS, new byte[0]),
                        Msg.of(Request.GET_VRING_BASE, state(1, 0)),
                        Msg.of(Request.GET_VRING_BASE, state(0, 0))))));

        List<Msg> negotiated = negotiate(FEATURES);
        m.put("bad-payload-sizes", seq(concat(negotiated, List.of(
                Msg.acked(Request.SET_VRING_NUM, new byte[4]),
                Msg.acked(Request.SET_FEATURES, new byte[7]),
                Msg.acked(Request.SET_VRING_ADDR, new byte[39]),
                Msg.acked(Request.SET_MEM_TABLE, new FuzzInput.Writer().u32(9).u32(0).toByteArray()),
                Msg.acked(Request.SET_MEM_TABLE, memTable(0, REGION, UVA, 0, 1, 2, 3, 4)),
                Msg.of(Request.GET_CONFIG, new FuzzInput.Writer().u32(0).u32(60).u32(0).toByteArray()),
                Msg.acked(Request.SET_OWNER, new byte[0])))));
        m.put("bad-missing-and-extra-fds", seq(concat(negotiated, List.of(
                Msg.acked(Request.SET_MEM_TABLE, memTable(0, REGION, UVA, 0)),
                Msg.acked(Request.SET_MEM_TABLE, memTable(0, REGION, UVA, 0), Fd.mem(PAGES), Fd.mem(PAGES)),
                Msg.acked(Request.ADD_MEM_REG, region(0, REGION, UVA, 0)),
                Msg.acked(Request.SET_VRING_KICK, u64(0), Fd.event(), Fd.event()),
                Msg.acked(Request.SET_VRING_CALL, u64(0x100), Fd.event()),
                Msg.acked(Request.SET_VRING_ERR, u64(0)),
                Msg.acked(Request.SET_OWNER, new byte[0], Fd.event()),
                Msg.acked(Request.SET_VRING_NUM, state(0, 16), Fd.event(), Fd.mem(1)),
                Msg.acked(Request.SET_OWNER, new byte[0])))));
        m.put("bad-overlapping-regions", seq(concat(negotiated, List.of(
                Msg.acked(Request.SET_MEM_TABLE, memTable(0, REGION, UVA, 0, REGION / 2, REGION, UVA + REGION, 0),
                        Fd.mem(PAGES), Fd.mem(PAGES)),
                Msg.acked(Request.SET_MEM_TABLE, memTable(0, REGION, UVA, 0), Fd.mem(PAGES)),
                Msg.acked(Request.ADD_MEM_REG, region(REGION - 4096, REGION, UVA + REGION, 0), Fd.mem(PAGES)),
                Msg.acked(Request.ADD_MEM_REG, region(-4096L, 8192, UVA + 2 * REGION, 0), Fd.mem(2))))));
        m.put("bad-ring-outside-memory", seq(concat(negotiated, List.of(memTableWithRing(),
                Msg.acked(Request.SET_VRING_NUM, state(0, 16)),
                Msg.acked(Request.SET_VRING_ADDR, addr(0, UVA + REGION - 0x80, UVA + 0x128, UVA + 0x100)),
                Msg.acked(Request.SET_VRING_KICK, u64(0), Fd.event()),
                Msg.acked(Request.SET_VRING_ADDR, addr(0, 0x1000, 0x2000, 0x3000)),
                Msg.acked(Request.SET_VRING_KICK, u64(0), Fd.event()),
                Msg.acked(Request.SET_VRING_NUM, state(0, 1024)),
                Msg.acked(Request.SET_VRING_ADDR, addr(0, UVA, UVA + 0x6000, UVA + 0x4000)),
                Msg.acked(Request.SET_VRING_KICK, u64(0x100))))));
        m.put("bad-queue-index-out-of-range", seq(concat(negotiated, List.of(
                Msg.acked(Request.SET_VRING_NUM, state(2, 16)),
                Msg.acked(Request.SET_VRING_BASE, state(255, 0)),
                Msg.acked(Request.SET_VRING_ADDR, addr(-1, UVA, UVA + 0x128, UVA + 0x100)),
                Msg.acked(Request.SET_VRING_KICK, u64(2), Fd.event()),
                Msg.acked(Request.SET_VRING_CALL, u64(0xFF | 0x100)),
                Msg.acked(Request.SET_VRING_ENABLE, state(7, 1)),
                Msg.of(Request.GET_VRING_BASE, state(0x7FFF_FFFF, 0))))));
        m.put("bad-ring-sizes", seq(concat(negotiated, List.of(
                Msg.acked(Request.SET_VRING_NUM, state(0, 100)),
                Msg.acked(Request.SET_VRING_NUM, state(0, 0)),
                Msg.acked(Request.SET_VRING_NUM, state(0, 65536)),
                Msg.acked(Request.SET_VRING_NUM, state(0, 2048)),
                Msg.acked(Request.SET_VRING_NUM, state(0, -1)),
                Msg.acked(Request.SET_VRING_BASE, state(0, 0x10000))))));
        m.put("bad-region-larger-than-its-memfd", seq(concat(negotiated, List.of(
                Msg.acked(Request.SET_MEM_TABLE, memTable(0, REGION, UVA, 0), Fd.mem(1, ringWithGetId())),
                Msg.acked(Request.SET_VRING_NUM, state(0, 16)),
                Msg.acked(Request.SET_VRING_ADDR, addr(0, UVA + 0x8000, UVA + 0x8128, UVA + 0x8100)),
                Msg.acked(Request.SET_VRING_KICK, u64(0), Fd.event())))));
        m.put("bad-mmap-offsets", seq(concat(negotiated, List.of(
                Msg.acked(Request.SET_MEM_TABLE, memTable(0, REGION, UVA, 1L << 48), Fd.mem(PAGES)),
                Msg.acked(Request.SET_MEM_TABLE, memTable(0, REGION, UVA, 4096 * 12), Fd.mem(PAGES)),
                Msg.acked(Request.SET_MEM_TABLE, memTable(0, -4096L, UVA, 0), Fd.mem(PAGES)),
                Msg.acked(Request.SET_MEM_TABLE, memTable(-4096L, 8192, UVA, 0), Fd.mem(2))))));
        m.put("bad-header-announces-a-gigabyte", seq(concat(negotiated, List.of(
                Msg.raw(Request.SET_OWNER, Message.VERSION, 1 << 30, new byte[0])))));
        m.put("bad-header-announces-less-than-sent", seq(concat(negotiated, List.of(
                Msg.raw(Request.SET_MEM_TABLE, Message.VERSION | Message.FLAG_NEED_REPLY, 8, memTable(0, REGION, UVA, 0), Fd.mem(PAGES)),
                Msg.acked(Request.SET_OWNER, new byte[0])))));
        m.put("odd-header-flags", seq(List.of(
                Msg.raw(Request.GET_FEATURES, 0, 0, new byte[0]),
                Msg.raw(Request.GET_FEATURES, Message.FLAG_REPLY | Message.VERSION, 0, new byte[0]),
                Msg.raw(Request.SET_OWNER, -1, 0, new byte[0]))));
        m.put("bad-unknown-requests", seq(concat(negotiated, List.of(
                Msg.acked(0, new byte[0]), Msg.acked(26, new byte[8]), Msg.acked(Request.SET_LOG_BASE, u64(0), Fd.mem(1)),
                Msg.acked(Request.SET_BACKEND_REQ_FD, new byte[0], Fd.event()), Msg.acked(Request.GET_INFLIGHT_FD, new byte[24]),
                Msg.acked(-1, new byte[0]), Msg.of(99, new byte[8])))));
        return m;
    }
}
