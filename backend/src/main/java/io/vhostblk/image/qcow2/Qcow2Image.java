package io.vhostblk.image.qcow2;

import io.airlift.compress.zstd.ZstdDecompressor;
import io.vhostblk.image.CacheMode;
import io.vhostblk.linux.Errno;
import io.vhostblk.linux.ErrnoException;
import io.vhostblk.linux.Libc;
import org.agrona.collections.LongArrayList;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.zip.DataFormatException;
import java.util.zip.Inflater;

/**
 * A qcow2 image (versions 2 and 3) served natively: reads through L1/L2 tables to allocated,
 * zero, compressed (deflate, zstd) and unallocated clusters (falling through to a qcow2 or raw
 * backing chain), extended L2 entries (subclusters), external data files; writes with cluster
 * allocation, copy-on-write, zero clusters and discard.
 *
 * <h2>Concurrency</h2>
 * All methods are thread-safe. Metadata (L1, cached L2 tables, refcounts) is guarded by one
 * short-held lock ({@code meta}); guest data moves outside it. A write that changes a cluster's
 * mapping (allocation, COW, zeroing, discard) holds a per-guest-cluster guard for the whole
 * operation, so concurrent allocating writes to one cluster are serialized while writes to
 * other clusters and in-place writes proceed in parallel.
 *
 * <h2>Crash consistency</h2>
 * L2 tables and refcount blocks are written back at {@link #flush()} (or when the caches fill).
 * Each metadata flush writes, in order: refcount blocks (then the refcount table, then the
 * header if the table moved), fdatasync, L2 tables, fdatasync, the L1 entries that point to new
 * L2 tables, fdatasync. Refcount decrements (discard, COW of shared or compressed clusters) are
 * applied only after the L2 tables that stopped referencing the clusters are durable, and freed
 * clusters are reused only after that. Hence whatever point a crash hits, every cluster
 * referenced on disk has a refcount on disk at least as high: at worst clusters leak. With the
 * lazy_refcounts feature the image is marked dirty before the first metadata write and the
 * refcount-before-L2 barrier is skipped; a dirty image's refcounts are rebuilt when it is next
 * opened read-write.
 */
public final class Qcow2Image implements BackingSource, io.vhostblk.image.MappedImage {
    private static final Logger LOG = LogManager.getLogger(Qcow2Image.class);

    static final long OFFSET_MASK = 0x00fffffffffffe00L;
    static final long COPIED = 1L << 63;
    static final long COMPRESSED = 1L << 62;
    static final long ZERO = 1L;
    static final long RT_OFFSET_MASK = 0xfffffffffffffe00L;

    static final int K_UNALLOC = 0;
    static final int K_ZERO_PLAIN = 1;
    static final int K_ZERO_ALLOC = 2;
    static final int K_NORMAL = 3;
    static final int K_COMPRESSED = 4;

    private static final int SC_DATA = 0;
    private static final int SC_ZERO = 1;
    private static final int SC_BACKING = 2;

    private static final VarHandle SHORT_BE = MethodHandles.byteArrayViewVarHandle(short[].class, ByteOrder.BIG_ENDIAN);
    private static final VarHandle INT_BE = MethodHandles.byteArrayViewVarHandle(int[].class, ByteOrder.BIG_ENDIAN);
    private static final VarHandle LONG_BE = MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.BIG_ENDIAN);

    final String path;
    final boolean readOnly;
    final Options opts;
    final HostFile file;
    final HostFile data;
    final Qcow2Header hdr;
    final int cb;
    final int cs;
    final long csMask;
    final boolean extL2;
    final boolean external;
    final int l2Bits;
    final int l2Entries;
    final int scBits;
    final int rcOrder;
    final int rbBits;
    final long rcMax;
    final long size;
    final int csizeShift;
    final long csizeMask;
    final long coffsetMask;
    final BackingSource backing;
    private final ImageLock lock;
    private final ImageLock dataLock;
    private final boolean lazyRefcounts;
    private final MemorySegment zeroes;

    // ---- guarded by meta
    private final ReentrantLock meta = new ReentrantLock();
    private final Condition guardFree = meta.newCondition();
    private final Set<Long> guards = new HashSet<>();
    long[] l1;
    private int l1DirtyLo = Integer.MAX_VALUE;
    private int l1DirtyHi = -1;
    long[] rt;
    long rtOffset;
    int rtClusters;
    private boolean rtDirty;
    private boolean rtMoved;
    private final MetaCache l2Cache;
    private final MetaCache rbCache;
    private LongArrayList pendingFree = new LongArrayList();
    private LongArrayList pendingPunch = new LongArrayList();
    private long freeHint;
    private long fileLen;
    private boolean dirtyBitOnDisk;
    /** Clusters the allocator must not hand out (set while repairing refcounts). */
    private long[] repairInUse;
    private volatile boolean needFlush;
    private boolean closed;

    private final ReentrantLock flushLock = new ReentrantLock();
    /** Test hook run after every metadata write of a flush (crash-point injection); null in production. */
    static volatile Runnable metadataWriteHook;
    final Bitmaps bitmaps;

    private Qcow2Image(String path, boolean readOnly, Options opts, HostFile file, Qcow2Header hdr, ImageLock lock) {
        this.path = path;
        this.readOnly = readOnly;
        this.opts = opts;
        this.file = file;
        this.hdr = hdr;
        this.lock = lock;
        this.cb = hdr.clusterBits;
        this.cs = 1 << cb;
        this.csMask = cs - 1;
        this.extL2 = hdr.extendedL2();
        this.external = hdr.externalDataFile();
        this.l2Bits = cb - (extL2 ? 4 : 3);
        this.l2Entries = 1 << l2Bits;
        this.scBits = cb - 5;
        this.rcOrder = hdr.refcountOrder;
        this.rbBits = cb + 3 - rcOrder;
        this.rcMax = rcOrder == 6 ? Long.MAX_VALUE : (1L << (1 << rcOrder)) - 1;
        this.size = hdr.size;
        this.csizeShift = 62 - (cb - 8);
        this.csizeMask = (1L << (cb - 8)) - 1;
        this.coffsetMask = (1L << csizeShift) - 1;
        this.lazyRefcounts = (hdr.compatible & Qcow2Header.COMPAT_LAZY_REFCOUNTS) != 0;
        this.l2Cache = new MetaCache(opts.l2CacheBytes(), cs);
        this.rbCache = new MetaCache(opts.refcountCacheBytes(), cs);
        this.zeroes = Arena.ofAuto().allocate(cs, 4096);
        this.dirtyBitOnDisk = (hdr.incompatible & Qcow2Header.INCOMPAT_DIRTY) != 0;
        HostFile df = null;
        ImageLock dl = null;
        BackingSource b = null;
        try {
            if (external) {
                if (hdr.dataFile == null) {
                    throw new Qcow2Exception(path + ": the image uses an external data file but does not name it");
                }
                String dp = resolveRelative(path, hdr.dataFile);
                df = HostFile.open(dp, readOnly, opts.cache());
                dl = opts.lock() ? ImageLock.acquire(df.fd, dp, readOnly) : null;
            }
            if (hdr.backingFile != null) {
                b = openBacking(path, hdr.backingFile, hdr.backingFormat, opts);
            }
        } catch (RuntimeException e) {
            if (dl != null) {
                dl.release();
            }
            if (df != null) {
                df.close();
            }
            throw e;
        }
        this.data = external ? df : file;
        this.dataLock = dl;
        this.backing = b;
        this.bitmaps = new Bitmaps(this);
    }

    // =====================================================================================
    // opening

    /** Opens a qcow2 image. Errors are {@link Qcow2Exception}s with operator-readable messages. */
    public static Qcow2Image open(String path, boolean readOnly, Options opts) {
        HostFile f = HostFile.open(path, readOnly, opts.cache());
        ImageLock lk = null;
        Qcow2Image img = null;
        try {
            lk = opts.lock() ? ImageLock.acquire(f.fd, path, readOnly) : null;
            byte[] first = f.read(0, 4096);
            if (!Qcow2Header.hasMagic(first)) {
                throw new Qcow2Exception(path + " is not a qcow2 image");
            }
            int bits = ByteBuffer.wrap(first).getInt(20);
            if (bits > 12 && bits <= 21) {
                first = f.read(0, 1 << bits);
            }
            Qcow2Header h = Qcow2Header.parse(first, path);
            img = new Qcow2Image(path, readOnly, opts, f, h, lk);
            img.load();
            return img;
        } catch (RuntimeException e) {
            if (img != null) {
                img.closeQuietly();
            } else {
                if (lk != null) {
                    lk.release();
                }
                f.close();
            }
            throw e;
        }
    }

    static String resolveRelative(String overlay, String name) {
        if (name.startsWith("/")) {
            return name;
        }
        if (name.startsWith("json:") || name.matches("^[a-zA-Z0-9+.-]+:.*") && !name.contains("/")) {
            throw new Qcow2Exception(overlay + ": backing/data file '" + name + "' uses a protocol; only local files are supported");
        }
        Path parent = Path.of(overlay).getParent();
        return parent == null ? name : parent.resolve(name).toString();
    }

    private static BackingSource openBacking(String overlay, String name, String format, Options opts) {
        String p = resolveRelative(overlay, name);
        String fmt = format;
        if (fmt == null) {
            try (HostFile probe = HostFile.open(p, true, CacheMode.WRITEBACK)) {
                fmt = Qcow2Header.hasMagic(probe.read(0, 4)) ? "qcow2" : "raw";
            }
        }
        Options bo = opts.withCacheSizes(Math.min(opts.l2CacheBytes(), 1L << 20), 64 << 10);
        return switch (fmt) {
            case "qcow2" -> open(p, true, bo);
            case "raw" -> new RawBacking(p, opts.lock());
            default -> throw new Qcow2Exception(overlay + ": backing file format '" + fmt + "' is not supported (qcow2, raw)");
        };
    }

    private void load() {
        long minL1 = (size + ((long) cs << l2Bits) - 1) >>> (cb + l2Bits);
        if (hdr.l1Size < minL1) {
            throw new Qcow2Exception(path + ": L1 table too small for the image size");
        }
        if ((hdr.l1TableOffset & csMask) != 0 || (hdr.refcountTableOffset & csMask) != 0) {
            throw new Qcow2Exception(path + ": L1 or refcount table not cluster-aligned");
        }
        if ((long) hdr.l1Size * 8 > 32L << 20 || (long) hdr.refcountTableClusters * cs > 8L << 20) {
            throw new Qcow2Exception(path + ": L1 or refcount table larger than QEMU's limits");
        }
        l1 = readLongs(hdr.l1TableOffset, hdr.l1Size);
        rtOffset = hdr.refcountTableOffset;
        rtClusters = hdr.refcountTableClusters;
        rt = readLongs(rtOffset, (int) ((long) rtClusters * cs / 8));
        fileLen = file.length();
        if (!readOnly) {
            if ((hdr.incompatible & Qcow2Header.INCOMPAT_CORRUPT) != 0) {
                throw new Qcow2Exception(path + ": the image is marked corrupt; repair it (qemu-img check -r all) or open it read-only");
            }
            if (dirtyBitOnDisk) {
                LOG.warn("{}: image is dirty (lazy refcounts were in use); rebuilding refcounts", path);
                Qcow2Check.repair(this);
                setDirtyBit(false);
            }
            if ((hdr.autoclear & ~Qcow2Header.AUTOCLEAR_KNOWN) != 0) {
                hdr.autoclear &= Qcow2Header.AUTOCLEAR_KNOWN;
                writeHeaderField(88, hdr.autoclear);
            }
            bitmaps.loadForWriting();
        }
    }

    long[] readLongs(long off, int n) {
        byte[] b = file.read(off, n * 8);
        long[] out = new long[n];
        ByteBuffer.wrap(b).asLongBuffer().get(out);
        return out;
    }

    static byte[] encodeLongs(long[] a, int from, int n) {
        ByteBuffer bb = ByteBuffer.allocate(n * 8);
        bb.asLongBuffer().put(a, from, n);
        return bb.array();
    }

    // =====================================================================================
    // public API

    public long size() {
        return size;
    }

    public int clusterSize() {
        return cs;
    }

    public boolean readOnly() {
        return readOnly;
    }

    public String path() {
        return path;
    }

    @Override
    public int logicalBlockSize() {
        return 512;
    }

    @Override
    public int physicalBlockSize() {
        return Math.min(clusterSize(), 4096);
    }

    @Override
    public boolean isBlockDevice() {
        return false;
    }

    @Override
    public String describe() {
        return path + " (qcow2 v" + hdr.version + ", " + size + " bytes, cluster " + cs
                + (extL2 ? ", extended L2" : "") + (external ? ", data file " + data.path : "")
                + (backing != null ? ", backing " + backing.describe() : "") + (readOnly ? ", read-only" : "") + ")";
    }

    /** Reads guest bytes [off, off + iov total) into the iovecs; the bytes read or -errno. */
    public int readv(long guestOffset, long iovAddr, int iovcnt) {
        try {
            Iov iov = Iov.of(iovAddr, iovcnt);
            if (guestOffset < 0 || guestOffset + iov.total > size) {
                return -Errno.EINVAL;
            }
            readInto(guestOffset, iov, 0, iov.total);
            return (int) iov.total;
        } catch (RuntimeException e) {
            return errno(e, "read");
        }
    }

    /** Writes the iovecs at guest offset {@code guestOffset}; with {@code fua} also flushes; the bytes written or -errno. */
    public int writev(long guestOffset, long iovAddr, int iovcnt, boolean fua) {
        if (readOnly) {
            return -Errno.EPERM;
        }
        try {
            Iov iov = Iov.of(iovAddr, iovcnt);
            if (guestOffset < 0 || guestOffset + iov.total > size) {
                return -Errno.EINVAL;
            }
            writeFrom(guestOffset, iov, 0, iov.total);
            bitmaps.markDirty(guestOffset, iov.total);
            maybeFlush();
            if (fua) {
                flushMetadata();
            }
            return (int) iov.total;
        } catch (RuntimeException e) {
            return errno(e, "write");
        }
    }

    /** Makes every completed write durable (data and metadata); 0 or -errno. */
    public int flush() {
        if (readOnly) {
            return 0;
        }
        try {
            flushMetadata();
            return 0;
        } catch (RuntimeException e) {
            return errno(e, "flush");
        }
    }

    /**
     * Deallocates the whole clusters inside [off, off+len): they read as zeros afterwards (with
     * a version 2 image and a backing file, as the backing file). Partial clusters are left as
     * they are, as the guest allows.
     */
    public int discard(long off, long len) {
        if (readOnly) {
            return -Errno.EPERM;
        }
        if (off < 0 || len < 0 || off + len > size) {
            return -Errno.EINVAL;
        }
        try {
            long first = (off + csMask) >>> cb;
            long end = (off + len) >>> cb;
            if (off + len == size) {
                end = (size + csMask) >>> cb;
            }
            for (long g = first; g < end; g++) {
                mappingChange(g, MODE_DISCARD);
            }
            bitmaps.markDirty(off, len);
            maybeFlush();
            return 0;
        } catch (RuntimeException e) {
            return errno(e, "discard");
        }
    }

    /**
     * Makes [off, off+len) read as zeros: whole clusters become zero clusters (version 3; with
     * {@code mayUnmap} their host clusters are released, otherwise kept allocated), the rest is
     * written with zeros.
     */
    public int writeZeroes(long off, long len, boolean mayUnmap) {
        if (readOnly) {
            return -Errno.EPERM;
        }
        if (off < 0 || len < 0 || off + len > size) {
            return -Errno.EINVAL;
        }
        try {
            long p = off;
            long end = off + len;
            while (p < end) {
                long g = p >>> cb;
                int from = (int) (p & csMask);
                long n = Math.min(end - p, cs - from);
                boolean whole = from == 0 && (n == cs || p + n == size);
                if (whole && (hdr.version >= 3 || (backing == null && mayUnmap))) {
                    mappingChange(g, mayUnmap ? MODE_ZERO_UNMAP : MODE_ZERO_KEEP);
                } else {
                    writeFrom(p, Iov.of(zeroes.asSlice(0, n)), 0, n);
                }
                p += n;
            }
            bitmaps.markDirty(off, len);
            maybeFlush();
            return 0;
        } catch (RuntimeException e) {
            return errno(e, "write zeroes");
        }
    }

    /**
     * Adds a persistent dirty bitmap (type dirty tracking, flag auto) that records every write
     * from now on and is stored on close. Needs a version 3 image opened read-write.
     */
    public void createBitmap(String name, long granularity) {
        bitmaps.create(name, granularity);
    }

    /** The persistent bitmaps: name, granularity, flags as {@code qemu-img info} names them. */
    public List<String> bitmapDescriptions() {
        List<String> l = new ArrayList<>();
        for (Bitmaps.Info i : bitmaps.list()) {
            l.add(i.name() + " granularity=" + i.granularity() + " flags=" + i.flagNames());
        }
        return l;
    }

    /** Flushes, clears the dirty and in-use marks and releases the locks. */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        RuntimeException failure = null;
        if (!readOnly) {
            try {
                flushMetadata();
                bitmaps.storeOnClose();
                flushMetadata();
                flushMetadata();
                if (dirtyBitOnDisk) {
                    setDirtyBit(false);
                }
            } catch (RuntimeException e) {
                failure = e;
            }
        }
        release();
        if (failure != null) {
            throw new Qcow2Exception(path + ": close: " + failure.getMessage(), failure);
        }
    }

    private void closeQuietly() {
        closed = true;
        release();
    }

    private void release() {
        if (backing != null) {
            backing.close();
        }
        if (dataLock != null) {
            dataLock.release();
        }
        if (external) {
            data.close();
        }
        if (lock != null) {
            lock.release();
        }
        file.close();
    }

    private int errno(RuntimeException e, String op) {
        if (e instanceof ErrnoException ee) {
            LOG.warn("{}: {} failed: {}", path, op, ee.getMessage());
            return -ee.errno();
        }
        LOG.error("{}: {} failed", path, op, e);
        return -Errno.EIO;
    }

    // =====================================================================================
    // L1/L2 lookup (callers hold meta)

    static int kind(long e, boolean extL2, boolean external) {
        if ((e & COMPRESSED) != 0) {
            return K_COMPRESSED;
        }
        long off = e & OFFSET_MASK;
        if (!extL2 && (e & ZERO) != 0) {
            return off != 0 ? K_ZERO_ALLOC : K_ZERO_PLAIN;
        }
        if (off == 0 && !(external && (e & COPIED) != 0)) {
            return K_UNALLOC;
        }
        return K_NORMAL;
    }

    int kind(long e) {
        return kind(e, extL2, external);
    }

    MetaCache.Table l2Table(long off) {
        MetaCache.Table t = l2Cache.get(off);
        if (t == null) {
            t = new MetaCache.Table(off);
            t.l2 = readLongs(off, cs / 8);
            l2Cache.put(t);
            if (l2Cache.overLimit()) {
                needFlush = true;
            }
        }
        return t;
    }

    /** Fills {@code out} with (entry, subcluster bitmap) of guest cluster {@code g}. */
    void lookup(long g, long[] out) {
        int l1i = (int) (g >>> l2Bits);
        out[0] = 0;
        out[1] = 0;
        if (l1i >= l1.length) {
            return;
        }
        long l2off = l1[l1i] & OFFSET_MASK;
        if (l2off == 0) {
            return;
        }
        MetaCache.Table t = l2Table(l2off);
        int i = (int) (g & (l2Entries - 1));
        if (extL2) {
            out[0] = t.l2[2 * i];
            out[1] = t.l2[2 * i + 1];
        } else {
            out[0] = t.l2[i];
        }
    }

    private void lookupLocked(long g, long[] out) {
        meta.lock();
        try {
            lookup(g, out);
        } finally {
            meta.unlock();
        }
    }

    // =====================================================================================
    // reads

    @Override
    public void readInto(long off, Iov iov, long iovOff, long n) {
        long[] ent = new long[2];
        long runHost = -1;
        long runIov = 0;
        long runLen = 0;
        while (n > 0) {
            long g = off >>> cb;
            int from = (int) (off & csMask);
            int len = (int) Math.min(n, cs - from);
            lookupLocked(g, ent);
            long e = ent[0];
            if (!extL2 && kind(e) == K_NORMAL) {
                long h = (e & OFFSET_MASK) + from;
                if (runLen > 0 && runHost + runLen == h) {
                    runLen += len;
                } else {
                    if (runLen > 0) {
                        data.readData(iov, runIov, runLen, runHost);
                    }
                    runHost = h;
                    runIov = iovOff;
                    runLen = len;
                }
            } else {
                if (runLen > 0) {
                    data.readData(iov, runIov, runLen, runHost);
                    runLen = 0;
                }
                readRange(g, e, ent[1], from, from + len, iov, iovOff);
            }
            off += len;
            iovOff += len;
            n -= len;
        }
        if (runLen > 0) {
            data.readData(iov, runIov, runLen, runHost);
        }
    }

    private int scState(int k, long bm, int sc) {
        if (k == K_NORMAL && ((bm >>> sc) & 1) != 0) {
            return SC_DATA;
        }
        if (((bm >>> (32 + sc)) & 1) != 0) {
            return SC_ZERO;
        }
        return SC_BACKING;
    }

    /** Reads bytes [from, to) of guest cluster {@code g}, whose L2 entry is (e, bm), into the iov. */
    void readRange(long g, long e, long bm, int from, int to, Iov iov, long iovOff) {
        int k = kind(e);
        long gOff = g << cb;
        long host = e & OFFSET_MASK;
        switch (k) {
            case K_COMPRESSED -> {
                byte[] c = decompress(e);
                iov.copyFrom(MemorySegment.ofArray(c), from, iovOff, to - from);
                return;
            }
            case K_ZERO_PLAIN, K_ZERO_ALLOC -> {
                iov.zero(iovOff, to - from);
                return;
            }
            default -> {
                if (!extL2) {
                    if (k == K_UNALLOC) {
                        readBacking(gOff + from, iov, iovOff, to - from);
                    } else {
                        data.readData(iov, iovOff, to - from, host + from);
                    }
                    return;
                }
            }
        }
        int p = from;
        while (p < to) {
            int state = scState(k, bm, p >>> scBits);
            int q = Math.min(to, ((p >>> scBits) + 1) << scBits);
            while (q < to && scState(k, bm, q >>> scBits) == state) {
                q = Math.min(to, ((q >>> scBits) + 1) << scBits);
            }
            long io = iovOff + (p - from);
            switch (state) {
                case SC_DATA -> data.readData(iov, io, q - p, host + p);
                case SC_ZERO -> iov.zero(io, q - p);
                default -> readBacking(gOff + p, iov, io, q - p);
            }
            p = q;
        }
    }

    private void readBacking(long off, Iov iov, long iovOff, long n) {
        if (backing == null) {
            iov.zero(iovOff, n);
            return;
        }
        long bs = backing.size();
        long m = off >= bs ? 0 : Math.min(n, bs - off);
        if (m > 0) {
            backing.readInto(off, iov, iovOff, m);
        }
        if (m < n) {
            iov.zero(iovOff + m, n - m);
        }
    }

    /** Host byte range [start, end) of a compressed cluster's data, as QEMU frees it. */
    long[] compressedRange(long e) {
        long coff = e & coffsetMask;
        long nsec = ((e >>> csizeShift) & csizeMask) + 1;
        long start = coff & ~511L;
        return new long[]{coff, start + nsec * 512};
    }

    private byte[] decompress(long e) {
        long[] r = compressedRange(e);
        int csize = (int) (r[1] - r[0]);
        byte[] in = new byte[csize + 1];
        byte[] got = file.read(r[0], csize);
        System.arraycopy(got, 0, in, 0, csize);
        byte[] out = new byte[cs];
        int n = 0;
        if (hdr.compressionType == 0) {
            Inflater inf = new Inflater(true);
            try {
                inf.setInput(in);
                while (n < cs) {
                    int k = inf.inflate(out, n, cs - n);
                    if (k == 0 && (inf.finished() || inf.needsInput() || inf.needsDictionary())) {
                        break;
                    }
                    n += k;
                }
            } catch (DataFormatException ex) {
                throw new ErrnoException("inflate", Errno.EIO, path + ": compressed cluster at " + r[0] + ": " + ex.getMessage());
            } finally {
                inf.end();
            }
        } else {
            try {
                int frame = zstdFrameLength(in, csize);
                n = new ZstdDecompressor().decompress(in, 0, frame, out, 0, cs);
            } catch (RuntimeException ex) {
                throw new ErrnoException("zstd", Errno.EIO, path + ": compressed cluster at " + r[0] + ": " + ex.getMessage());
            }
        }
        if (n < cs) {
            throw new ErrnoException("decompress", Errno.EIO, path + ": compressed cluster at " + r[0] + " is short");
        }
        return out;
    }

    /**
     * Length of the zstd frame at the start of {@code b}: compressed clusters are followed by
     * unrelated bytes up to the end of their last sector, which a decoder must not read as a
     * further frame.
     */
    static int zstdFrameLength(byte[] b, int limit) {
        if (limit < 6 || (b[0] & 0xff) != 0x28 || (b[1] & 0xff) != 0xb5 || (b[2] & 0xff) != 0x2f || (b[3] & 0xff) != 0xfd) {
            throw new IllegalArgumentException("not a zstd frame");
        }
        int fhd = b[4] & 0xff;
        int fcsFlag = fhd >>> 6;
        boolean single = (fhd & 0x20) != 0;
        boolean checksum = (fhd & 0x04) != 0;
        int dictFlag = fhd & 3;
        int p = 5 + (single ? 0 : 1) + new int[]{0, 1, 2, 4}[dictFlag] + new int[]{single ? 1 : 0, 2, 4, 8}[fcsFlag];
        for (;;) {
            if (p + 3 > limit) {
                throw new IllegalArgumentException("truncated zstd frame");
            }
            int bh = (b[p] & 0xff) | (b[p + 1] & 0xff) << 8 | (b[p + 2] & 0xff) << 16;
            p += 3;
            int type = (bh >>> 1) & 3;
            int bsize = bh >>> 3;
            p += type == 1 ? 1 : bsize;
            if ((bh & 1) != 0) {
                break;
            }
        }
        p += checksum ? 4 : 0;
        if (p > limit) {
            throw new IllegalArgumentException("truncated zstd frame");
        }
        return p;
    }

    // =====================================================================================
    // writes

    private long scMask(int a, int b) {
        int s0 = a >>> scBits;
        int s1 = (b - 1) >>> scBits;
        return ((1L << (s1 + 1)) - 1) & ~((1L << s0) - 1);
    }

    private boolean inPlace(long e, long bm, int a, int b) {
        if (kind(e) != K_NORMAL || (e & COPIED) == 0) {
            return false;
        }
        if (!extL2) {
            return true;
        }
        long t = scMask(a, b);
        return (bm & t) == t;
    }

    private void acquireGuard(long g) {
        while (guards.contains(g)) {
            guardFree.awaitUninterruptibly();
        }
        guards.add(g);
    }

    private void releaseGuard(long g) {
        meta.lock();
        try {
            guards.remove(g);
            guardFree.signalAll();
        } finally {
            meta.unlock();
        }
    }

    void writeFrom(long off, Iov iov, long iovOff, long n) {
        long[] ent = new long[2];
        long runHost = -1;
        long runIov = 0;
        long runLen = 0;
        while (n > 0) {
            long g = off >>> cb;
            int from = (int) (off & csMask);
            int len = (int) Math.min(n, cs - from);
            long host = -1;
            meta.lock();
            try {
                for (;;) {
                    lookup(g, ent);
                    if (inPlace(ent[0], ent[1], from, from + len)) {
                        host = (ent[0] & OFFSET_MASK) + from;
                        break;
                    }
                    if (!guards.contains(g)) {
                        guards.add(g);
                        break;
                    }
                    guardFree.awaitUninterruptibly();
                }
            } finally {
                meta.unlock();
            }
            if (host >= 0) {
                if (runLen > 0 && runHost + runLen == host) {
                    runLen += len;
                } else {
                    if (runLen > 0) {
                        data.writeData(iov, runIov, runLen, runHost);
                    }
                    runHost = host;
                    runIov = iovOff;
                    runLen = len;
                }
            } else {
                if (runLen > 0) {
                    data.writeData(iov, runIov, runLen, runHost);
                    runLen = 0;
                }
                try {
                    allocatingWrite(g, from, from + len, iov, iovOff);
                } finally {
                    releaseGuard(g);
                }
            }
            off += len;
            iovOff += len;
            n -= len;
        }
        if (runLen > 0) {
            data.writeData(iov, runIov, runLen, runHost);
        }
    }

    /** Writes bytes [a, b) of cluster g that need a mapping change; the caller holds g's guard. */
    private void allocatingWrite(long g, int a, int b, Iov iov, long iovOff) {
        long[] ent = new long[2];
        long e;
        long bm;
        int k;
        long newHost;
        boolean reuse;
        boolean fresh = false;
        long sMask;
        meta.lock();
        try {
            lookup(g, ent);
            e = ent[0];
            bm = ent[1];
            k = kind(e);
            long oldHost = e & OFFSET_MASK;
            if (external) {
                newHost = g << cb;
                reuse = true;
            } else if ((k == K_NORMAL || k == K_ZERO_ALLOC) && (e & COPIED) != 0) {
                newHost = oldHost;
                reuse = true;
            } else {
                newHost = allocRun(1) << cb;
                reuse = false;
                // A cluster past the end of the file reads as zeroes, and so does the rest of an
                // unallocated or zero cluster of an image without a backing file: only the
                // guest's bytes need writing. The file is extended over the whole cluster first,
                // and fileLen reserved here, so no later allocation mistakes it for fresh.
                fresh = !extL2 && backing == null && (k == K_UNALLOC || k == K_ZERO_PLAIN) && newHost >= fileLen;
                if (fresh) {
                    fileLen = newHost + cs;
                }
            }
            if (!extL2) {
                sMask = 1;
            } else if (k == K_COMPRESSED) {
                sMask = 0xffffffffL;
            } else {
                long touched = scMask(a, b);
                sMask = reuse ? touched : touched | (k == K_NORMAL ? bm & 0xffffffffL : 0);
            }
        } finally {
            meta.unlock();
        }
        int lo;
        int hi;
        if (!extL2) {
            lo = 0;
            hi = cs;
        } else {
            lo = Long.numberOfTrailingZeros(sMask) << scBits;
            hi = (64 - Long.numberOfLeadingZeros(sMask)) << scBits;
            if (!reuse && !external) {
                ensureLength(data, newHost + cs);
            }
        }
        if (fresh && (a != lo || b != hi) && Libc.fallocateRaw(data.fd, 0, newHost, cs) != 0) {
            fresh = false; // no fallocate here: fall back to writing the whole cluster
        }
        if ((a == lo && b == hi) || fresh) {
            data.writeData(iov, iovOff, b - a, newHost + a);
        } else {
            try (Arena ar = Arena.ofConfined()) {
                MemorySegment buf = ar.allocate(hi - lo, 4096);
                Iov biov = Iov.of(buf);
                if (a > lo) {
                    readRange(g, e, bm, lo, a, biov, 0);
                }
                if (hi > b) {
                    readRange(g, e, bm, b, hi, biov, b - lo);
                }
                iov.copyTo(iovOff, buf, a - lo, b - a);
                data.writeData(biov, 0, hi - lo, newHost + lo);
            }
        }
        meta.lock();
        try {
            MetaCache.Table t = l2ForWrite(g);
            int i = (int) (g & (l2Entries - 1));
            if (!extL2) {
                t.l2[i] = newHost | COPIED;
            } else {
                long alloc = (reuse && k == K_NORMAL ? bm & 0xffffffffL : 0) | sMask;
                long zero = (bm >>> 32) & ~sMask & 0xffffffffL;
                t.l2[2 * i] = newHost | COPIED;
                t.l2[2 * i + 1] = alloc | (zero << 32);
            }
            t.dirty = true;
            if (!reuse) {
                scheduleFree(e);
            }
            if (l2Cache.overLimit() || rbCache.overLimit()) {
                needFlush = true;
            }
        } finally {
            meta.unlock();
        }
    }

    private void ensureLength(HostFile f, long end) {
        if (end <= fileLen) {
            return;
        }
        // fallocate never shrinks, unlike ftruncate racing with concurrent extending writes
        int r = Libc.fallocateRaw(f.fd, 0, end - cs, cs);
        if (r < 0) {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment one = a.allocate(1);
                if (f.length() < end) {
                    f.write(end - 1, one, 1);
                }
            }
        }
        meta.lock();
        try {
            fileLen = Math.max(fileLen, end);
        } finally {
            meta.unlock();
        }
    }

    static final int MODE_DISCARD = 0;
    static final int MODE_ZERO_UNMAP = 1;
    static final int MODE_ZERO_KEEP = 2;

    /** Changes the mapping of a whole cluster to unallocated or zero. */
    private void mappingChange(long g, int mode) {
        meta.lock();
        try {
            acquireGuard(g);
            try {
                long[] ent = new long[2];
                lookup(g, ent);
                long e = ent[0];
                long bm = ent[1];
                int k = kind(e);
                boolean v3 = hdr.version >= 3;
                long ne;
                long nbm = 0;
                boolean keep = false;
                if (mode == MODE_ZERO_KEEP && k == K_NORMAL && (e & COPIED) != 0 && !external) {
                    keep = true;
                    ne = e;
                    if (extL2) {
                        nbm = 0xffffffffL << 32;
                    } else {
                        ne = e | ZERO;
                    }
                } else if (mode == MODE_ZERO_KEEP && k == K_ZERO_ALLOC) {
                    return;
                } else {
                    boolean zero = mode != MODE_DISCARD ? v3 : v3 && backing != null;
                    if (zero) {
                        ne = extL2 ? 0 : ZERO;
                        nbm = extL2 ? 0xffffffffL << 32 : 0;
                    } else {
                        ne = 0;
                    }
                }
                if (ne == e && nbm == bm) {
                    return;
                }
                if (ne == 0 && nbm == 0 && (l1[(int) (g >>> l2Bits)] & OFFSET_MASK) == 0) {
                    return;
                }
                MetaCache.Table t = l2ForWrite(g);
                int i = (int) (g & (l2Entries - 1));
                if (extL2) {
                    t.l2[2 * i] = ne;
                    t.l2[2 * i + 1] = nbm;
                } else {
                    t.l2[i] = ne;
                }
                t.dirty = true;
                if (!keep) {
                    scheduleFree(e);
                }
                if (l2Cache.overLimit() || rbCache.overLimit()) {
                    needFlush = true;
                }
            } finally {
                guards.remove(g);
                guardFree.signalAll();
            }
        } finally {
            meta.unlock();
        }
    }

    /** The L2 table of cluster g, made writable (allocated, or copied if shared); under meta. */
    private MetaCache.Table l2ForWrite(long g) {
        int l1i = (int) (g >>> l2Bits);
        long l1e = l1[l1i];
        long off = l1e & OFFSET_MASK;
        if (off != 0 && (l1e & COPIED) != 0) {
            return l2Table(off);
        }
        long noff = allocRun(1) << cb;
        MetaCache.Table t = new MetaCache.Table(noff);
        t.l2 = off == 0 ? new long[cs / 8] : l2Table(off).l2.clone();
        t.dirty = true;
        l2Cache.put(t);
        if (off != 0) {
            pendingFree.add(off >>> cb);
        }
        l1[l1i] = noff | COPIED;
        l1DirtyLo = Math.min(l1DirtyLo, l1i);
        l1DirtyHi = Math.max(l1DirtyHi, l1i);
        return t;
    }

    /** Queues the release of the host clusters an L2 entry referenced (applied after the next flush). */
    private void scheduleFree(long e) {
        int k = kind(e);
        if (k == K_COMPRESSED) {
            long[] r = compressedRange(e);
            for (long c = r[0] >>> cb; c <= (r[1] - 1) >>> cb; c++) {
                pendingFree.add(c);
            }
        } else if (k == K_NORMAL || k == K_ZERO_ALLOC) {
            long host = e & OFFSET_MASK;
            if (external) {
                pendingPunch.add(host >>> cb);
            } else {
                pendingFree.add(host >>> cb);
            }
        }
    }

    // =====================================================================================
    // refcounts (callers hold meta)

    long rcGet(byte[] b, int i) {
        return switch (rcOrder) {
            case 0 -> (b[i >>> 3] >>> (i & 7)) & 1;
            case 1 -> (b[i >>> 2] >>> ((i & 3) << 1)) & 3;
            case 2 -> (b[i >>> 1] >>> ((i & 1) << 2)) & 15;
            case 3 -> b[i] & 0xff;
            case 4 -> (short) SHORT_BE.get(b, i << 1) & 0xffff;
            case 5 -> (int) INT_BE.get(b, i << 2) & 0xffffffffL;
            default -> (long) LONG_BE.get(b, i << 3);
        };
    }

    void rcPut(byte[] b, int i, long v) {
        switch (rcOrder) {
            case 0, 1, 2 -> {
                int w = 1 << rcOrder;
                int per = 8 / w;
                int idx = i / per;
                int shift = (i % per) * w;
                int mask = ((1 << w) - 1) << shift;
                b[idx] = (byte) ((b[idx] & ~mask) | (((int) v << shift) & mask));
            }
            case 3 -> b[i] = (byte) v;
            case 4 -> SHORT_BE.set(b, i << 1, (short) v);
            case 5 -> INT_BE.set(b, i << 2, (int) v);
            default -> LONG_BE.set(b, i << 3, v);
        }
    }

    /** Sets refcount 1 for clusters [0, n) in fresh refcount blocks (image creation). */
    static void rcPutStatic(int order, byte[][] blocks, long perBlock, long n) {
        for (long c = 0; c < n; c++) {
            byte[] b = blocks[(int) (c / perBlock)];
            int i = (int) (c % perBlock);
            switch (order) {
                case 0, 1, 2 -> {
                    int w = 1 << order;
                    int per = 8 / w;
                    b[i / per] |= (byte) (1 << ((i % per) * w));
                }
                case 3 -> b[i] = 1;
                case 4 -> SHORT_BE.set(b, i << 1, (short) 1);
                case 5 -> INT_BE.set(b, i << 2, 1);
                default -> LONG_BE.set(b, i << 3, 1L);
            }
        }
    }

    /** preallocation=metadata: every guest cluster gets a host cluster (sparse, reading zeros). */
    void preallocateMetadata() {
        long clusters = (size + csMask) >>> cb;
        long end = 0;
        meta.lock();
        try {
            for (long g = 0; g < clusters; g++) {
                long host = external ? g << cb : allocRun(1) << cb;
                MetaCache.Table t = l2ForWrite(g);
                int i = (int) (g & (l2Entries - 1));
                if (extL2) {
                    t.l2[2 * i] = host | COPIED;
                    t.l2[2 * i + 1] = 0xffffffffL;
                } else {
                    t.l2[i] = host | COPIED;
                }
                t.dirty = true;
                end = Math.max(end, host + cs);
                if (l2Cache.overLimit() || rbCache.overLimit()) {
                    meta.unlock();
                    try {
                        flushMetadata();
                    } finally {
                        meta.lock();
                    }
                }
            }
        } finally {
            meta.unlock();
        }
        flushMetadata();
        if (!external && end > file.length()) {
            file.truncate(end);
        }
    }

    /** One extent of {@link #blockStatus}: as {@code qemu-img map --output=json} reports it. */
    public record Extent(long start, long length, int depth, boolean present, boolean zero, boolean data, long offset,
                         String file) {
    }

    /** The status of guest bytes from {@code off} (at most {@code max} bytes, within one cluster). */
    Extent blockStatus(long off, long max, int depth) {
        long g = off >>> cb;
        int from = (int) (off & csMask);
        long len = Math.min(max, cs - from);
        long[] ent = new long[2];
        lookupLocked(g, ent);
        long e = ent[0];
        int k = kind(e);
        long host = e & OFFSET_MASK;
        int state;
        if (k == K_COMPRESSED) {
            return new Extent(off, len, depth, true, false, true, -1, path);
        } else if (k == K_ZERO_PLAIN || k == K_ZERO_ALLOC) {
            return new Extent(off, len, depth, true, true, false, k == K_ZERO_ALLOC ? host + from : -1, data.path);
        } else if (!extL2) {
            state = k == K_NORMAL ? SC_DATA : SC_BACKING;
        } else {
            state = scState(k, ent[1], from >>> scBits);
            int to = from;
            while (to < from + len && scState(k, ent[1], to >>> scBits) == state) {
                to = ((to >>> scBits) + 1) << scBits;
            }
            len = Math.min(len, to - from);
        }
        if (state == SC_DATA) {
            long h = host + from;
            long[] hole = holeStatus(data.fd, h, len);
            return new Extent(off, hole[1], depth, true, hole[0] != 0, true, h, data.path);
        }
        if (state == SC_ZERO) {
            return new Extent(off, len, depth, true, true, false, k == K_NORMAL ? host + from : -1, data.path);
        }
        if (backing instanceof Qcow2Image b && off < b.size()) {
            Extent x = b.blockStatus(off, Math.min(len, b.size() - off), depth + 1);
            return x;
        }
        if (backing instanceof RawBacking rb && off < rb.size()) {
            long n = Math.min(len, rb.size() - off);
            long[] hole = holeStatus(rb.fd(), off, n);
            return new Extent(off, hole[1], depth + 1, true, hole[0] != 0, true, off, rb.describe());
        }
        return new Extent(off, len, backing == null ? depth : chainDepth(depth), false, true, false, -1, null);
    }

    private int chainDepth(int depth) {
        int d = depth;
        BackingSource b = backing;
        while (b != null) {
            d++;
            b = b instanceof Qcow2Image q ? q.backing : null;
        }
        return d;
    }

    /** {hole ? 1 : 0, length of the run of that kind from {@code host}, at most n}. */
    static long[] holeStatus(int fd, long host, long n) {
        long d = Libc.lseekRaw(fd, host, Libc.SEEK_DATA);
        if (d < 0 || d >= host + n) {
            return new long[]{1, n};
        }
        if (d > host) {
            return new long[]{1, d - host};
        }
        long h = Libc.lseekRaw(fd, host, Libc.SEEK_HOLE);
        if (h < 0 || h >= host + n) {
            return new long[]{0, n};
        }
        return new long[]{0, h - host};
    }

    MetaCache.Table rbTable(long off) {
        MetaCache.Table t = rbCache.get(off);
        if (t == null) {
            t = new MetaCache.Table(off);
            t.rb = file.read(off, cs);
            rbCache.put(t);
            if (rbCache.overLimit()) {
                needFlush = true;
            }
        }
        return t;
    }

    long refcount(long c) {
        long bi = c >>> rbBits;
        if (bi >= rt.length) {
            return 0;
        }
        long off = rt[(int) bi] & RT_OFFSET_MASK;
        if (off == 0) {
            return 0;
        }
        return rcGet(rbTable(off).rb, (int) (c & ((1L << rbBits) - 1)));
    }

    private boolean repairBusy(long c) {
        return repairInUse != null && c < (long) repairInUse.length * 64 && (repairInUse[(int) (c >>> 6)] & (1L << c)) != 0;
    }

    /** Finds and takes (refcount 1) {@code n} contiguous free clusters; returns the first index. */
    long allocRun(int n) {
        long c = freeHint;
        outer:
        for (;;) {
            for (int i = 0; i < n; i++) {
                if (refcount(c + i) != 0 || repairBusy(c + i)) {
                    c = c + i + 1;
                    continue outer;
                }
            }
            break;
        }
        for (int i = 0; i < n; i++) {
            setRefcount(c + i, 1, c, c + n);
        }
        if (c == freeHint) {
            freeHint = c + n;
        }
        return c;
    }

    void setRefcount(long c, long v, long avoidLo, long avoidHi) {
        if (v < 0 || v > rcMax) {
            throw new ErrnoException("refcount", Errno.EIO, path + ": refcount of cluster " + c + " out of range: " + v);
        }
        long bi = c >>> rbBits;
        if (bi >= rt.length) {
            growRefcountTable(bi, avoidLo, avoidHi);
        }
        if ((rt[(int) bi] & RT_OFFSET_MASK) == 0) {
            allocRefBlock(bi, avoidLo, avoidHi);
        }
        MetaCache.Table t = rbTable(rt[(int) bi] & RT_OFFSET_MASK);
        rcPut(t.rb, (int) (c & ((1L << rbBits) - 1)), v);
        t.dirty = true;
        if (rbCache.overLimit()) {
            needFlush = true;
        }
    }

    private void allocRefBlock(long bi, long avoidLo, long avoidHi) {
        long first = bi << rbBits;
        long last = first + (1L << rbBits);
        long pick = Math.max(first, freeHint);
        while (pick < last && ((pick >= avoidLo && pick < avoidHi) || repairBusy(pick))) {
            pick++;
        }
        if (pick >= last) {
            pick = first;
            while (pick < last && ((pick >= avoidLo && pick < avoidHi) || repairBusy(pick))) {
                pick++;
            }
        }
        if (pick >= last) {
            throw new ErrnoException("refcount", Errno.ENOSPC, path + ": no room for a refcount block");
        }
        MetaCache.Table t = new MetaCache.Table(pick << cb);
        t.rb = new byte[cs];
        rcPut(t.rb, (int) (pick - first), 1);
        t.dirty = true;
        rbCache.put(t);
        rt[(int) bi] = pick << cb;
        rtDirty = true;
    }

    private void growRefcountTable(long needBi, long avoidLo, long avoidHi) {
        long start = Math.max(avoidHi, (long) rt.length << rbBits);
        if (repairInUse != null) {
            start = Math.max(start, (long) repairInUse.length * 64);
        }
        long entries = Math.max(rt.length * 2L, needBi + 1);
        int k;
        for (;;) {
            k = (int) ((entries * 8 + cs - 1) / cs);
            long last = start + k + 64;
            if ((last >>> rbBits) < entries) {
                break;
            }
            entries = (last >>> rbBits) + 1;
        }
        entries = (long) k * cs / 8;
        if (entries > (8L << 20) / 8) {
            throw new ErrnoException("refcount", Errno.ENOSPC, path + ": refcount table would exceed 8 MiB");
        }
        long[] nrt = Arrays.copyOf(rt, (int) entries);
        LongArrayList mark = new LongArrayList();
        for (int i = 0; i < k; i++) {
            mark.add(start + i);
        }
        long next = start + k;
        for (int i = 0; i < mark.size(); i++) {
            long c = mark.getLong(i);
            int bi = (int) (c >>> rbBits);
            if ((nrt[bi] & RT_OFFSET_MASK) == 0) {
                nrt[bi] = next << cb;
                MetaCache.Table t = new MetaCache.Table(next << cb);
                t.rb = new byte[cs];
                t.dirty = true;
                rbCache.put(t);
                mark.add(next);
                next++;
            }
        }
        for (int i = 0; i < mark.size(); i++) {
            long c = mark.getLong(i);
            MetaCache.Table t = rbTable(nrt[(int) (c >>> rbBits)] & RT_OFFSET_MASK);
            rcPut(t.rb, (int) (c & ((1L << rbBits) - 1)), 1);
            t.dirty = true;
        }
        for (int i = 0; i < rtClusters; i++) {
            pendingFree.add((rtOffset >>> cb) + i);
        }
        rt = nrt;
        rtOffset = start << cb;
        rtClusters = k;
        rtDirty = true;
        rtMoved = true;
        if (rbCache.overLimit()) {
            needFlush = true;
        }
    }

    private void applyFrees(LongArrayList frees, LongArrayList punches) {
        long runStart = -1;
        long runEnd = -1;
        for (int i = 0; i < frees.size(); i++) {
            long c = frees.getLong(i);
            long r = refcount(c);
            if (r == 0) {
                LOG.warn("{}: freeing cluster {} whose refcount is already 0", path, c);
                continue;
            }
            setRefcount(c, r - 1, -1, -1);
            if (r == 1) {
                freeHint = Math.min(freeHint, c);
                if (opts.discardPunchesHoles()) {
                    if (c == runEnd) {
                        runEnd++;
                    } else {
                        if (runStart >= 0) {
                            file.punchHole(runStart << cb, (runEnd - runStart) << cb);
                        }
                        runStart = c;
                        runEnd = c + 1;
                    }
                }
            }
        }
        if (runStart >= 0) {
            file.punchHole(runStart << cb, (runEnd - runStart) << cb);
        }
        if (opts.discardPunchesHoles()) {
            for (int i = 0; i < punches.size(); i++) {
                data.punchHole(punches.getLong(i) << cb, cs);
            }
        }
    }

    // =====================================================================================
    // metadata write-back

    private void maybeFlush() {
        if (needFlush) {
            needFlush = false;
            flushMetadata();
            meta.lock();
            try {
                l2Cache.trim();
                rbCache.trim();
            } finally {
                meta.unlock();
            }
        }
    }

    private record Pending(MetaCache.Table t, byte[] bytes) {
    }

    private static void hook() {
        Runnable h = metadataWriteHook;
        if (h != null) {
            h.run();
        }
    }

    /** Writes back dirty metadata in crash-safe order and makes everything durable. */
    void flushMetadata() {
        flushLock.lock();
        try {
            List<Pending> rbs = new ArrayList<>();
            List<Pending> l2s = new ArrayList<>();
            byte[] rtBytes = null;
            boolean moved;
            long rtOff;
            int rtCl;
            byte[] l1Bytes = null;
            int l1Lo;
            int l1Hi;
            LongArrayList frees;
            LongArrayList punches;
            meta.lock();
            try {
                for (MetaCache.Table t : rbCache.dirty()) {
                    t.dirty = false;
                    t.pins++;
                    rbs.add(new Pending(t, t.rb.clone()));
                }
                for (MetaCache.Table t : l2Cache.dirty()) {
                    t.dirty = false;
                    t.pins++;
                    l2s.add(new Pending(t, encodeLongs(t.l2, 0, t.l2.length)));
                }
                moved = rtMoved;
                rtOff = rtOffset;
                rtCl = rtClusters;
                if (rtDirty) {
                    rtBytes = encodeLongs(rt, 0, rt.length);
                    rtDirty = false;
                    rtMoved = false;
                }
                l1Lo = l1DirtyLo;
                l1Hi = l1DirtyHi;
                if (l1Hi >= 0) {
                    l1Bytes = encodeLongs(l1, l1Lo, l1Hi - l1Lo + 1);
                    l1DirtyLo = Integer.MAX_VALUE;
                    l1DirtyHi = -1;
                }
                frees = pendingFree;
                punches = pendingPunch;
                pendingFree = new LongArrayList();
                pendingPunch = new LongArrayList();
            } finally {
                meta.unlock();
            }
            boolean metaWork = !rbs.isEmpty() || !l2s.isEmpty() || rtBytes != null || l1Bytes != null;
            try {
                if (metaWork && lazyRefcounts && !dirtyBitOnDisk) {
                    setDirtyBit(true);
                }
                for (Pending p : rbs) {
                    file.write(p.t.off, p.bytes);
                    hook();
                }
                if (rtBytes != null) {
                    if (!lazyRefcounts && !rbs.isEmpty()) {
                        file.sync();
                    }
                    file.write(rtOff, rtBytes);
                    hook();
                    if (moved) {
                        file.sync();
                        ByteBuffer hb = ByteBuffer.allocate(12);
                        hb.putLong(0, rtOff);
                        hb.putInt(8, rtCl);
                        file.write(48, hb.array());
                        hook();
                        hdr.refcountTableOffset = rtOff;
                        hdr.refcountTableClusters = rtCl;
                    }
                }
                if (!l2s.isEmpty() || l1Bytes != null) {
                    if (!lazyRefcounts || external) {
                        file.sync();
                        if (external) {
                            data.sync();
                        }
                    }
                    for (Pending p : l2s) {
                        file.write(p.t.off, p.bytes);
                        hook();
                    }
                    if (l1Bytes != null) {
                        if (!l2s.isEmpty()) {
                            file.sync();
                        }
                        file.write(hdr.l1TableOffset + 8L * l1Lo, l1Bytes);
                        hook();
                    }
                }
                file.sync();
                if (external) {
                    data.sync();
                }
            } catch (RuntimeException ex) {
                meta.lock();
                try {
                    for (Pending p : rbs) {
                        p.t.dirty = true;
                        p.t.pins--;
                    }
                    for (Pending p : l2s) {
                        p.t.dirty = true;
                        p.t.pins--;
                    }
                    if (rtBytes != null) {
                        rtDirty = true;
                        rtMoved |= moved;
                    }
                    if (l1Bytes != null) {
                        l1DirtyLo = Math.min(l1DirtyLo, l1Lo);
                        l1DirtyHi = Math.max(l1DirtyHi, l1Hi);
                    }
                    frees.addAll(pendingFree);
                    pendingFree = frees;
                    punches.addAll(pendingPunch);
                    pendingPunch = punches;
                } finally {
                    meta.unlock();
                }
                throw ex;
            }
            meta.lock();
            try {
                for (Pending p : rbs) {
                    p.t.pins--;
                }
                for (Pending p : l2s) {
                    p.t.pins--;
                }
                applyFrees(frees, punches);
            } finally {
                meta.unlock();
            }
        } finally {
            flushLock.unlock();
        }
    }

    void setDirtyBit(boolean dirty) {
        if (dirty) {
            hdr.incompatible |= Qcow2Header.INCOMPAT_DIRTY;
        } else {
            hdr.incompatible &= ~Qcow2Header.INCOMPAT_DIRTY;
        }
        if (hdr.version < 3) {
            return;
        }
        file.sync();
        writeHeaderField(72, hdr.incompatible);
        file.sync();
        dirtyBitOnDisk = dirty;
    }

    void writeHeaderField(int off, long v) {
        ByteBuffer b = ByteBuffer.allocate(8);
        b.putLong(0, v);
        file.write(off, b.array());
    }

    // ---- hooks for Bitmaps and Qcow2Check

    ReentrantLock metaLock() {
        return meta;
    }

    void markL1Dirty(int lo, int hi) {
        l1DirtyLo = Math.min(l1DirtyLo, lo);
        l1DirtyHi = Math.max(l1DirtyHi, hi);
    }

    void addPendingFree(long cluster) {
        pendingFree.add(cluster);
    }

    void setRepairInUse(long[] inUse) {
        repairInUse = inUse;
    }

    void resetFreeHint() {
        freeHint = 0;
    }

    boolean lazyRefcounts() {
        return lazyRefcounts;
    }
}
