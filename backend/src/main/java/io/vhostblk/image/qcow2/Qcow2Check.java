package io.vhostblk.image.qcow2;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Consistency check as {@code qemu-img check} does it: every host cluster's references (header,
 * L1/L2 tables and data of the active layer and of internal snapshots, refcount structures,
 * bitmaps) are counted and compared with the stored refcount. A refcount lower than the
 * references is a corruption (the cluster could be handed out twice); a higher one is a leak.
 * Also reports misaligned offsets and wrong OFLAG_COPIED flags as corruptions, and the same
 * allocation statistics as qemu-img.
 */
final class Qcow2Check {
    private Qcow2Check() {
    }

    record Result(long corruptions, long leaks, long checkErrors, long totalClusters, long allocatedClusters,
                  long fragmentedClusters, long compressedClusters, long imageEndOffset, List<String> messages) {
    }

    private static final class Walk {
        final Qcow2Image img;
        long[] refs = new long[1024];
        long corruptions;
        long allocated;
        long fragmented;
        long compressed;
        long nextContiguous;
        final List<String> messages = new ArrayList<>();

        Walk(Qcow2Image img) {
            this.img = img;
        }

        void inc(long off, long len) {
            if (len <= 0) {
                return;
            }
            long first = off >>> img.cb;
            long last = (off + len - 1) >>> img.cb;
            for (long c = first; c <= last; c++) {
                if (c >= refs.length) {
                    if (c > (1L << 31) - 8) {
                        corruption("reference to cluster " + c + " is out of range");
                        return;
                    }
                    refs = Arrays.copyOf(refs, (int) Math.max(c + 1, Math.min((1L << 31) - 8, refs.length * 2L)));
                }
                refs[(int) c]++;
            }
        }

        void corruption(String m) {
            corruptions++;
            if (messages.size() < 1000) {
                messages.add("ERROR " + m);
            }
        }

        /** Walks one L1 table; {@code active} adds flag checks and allocation statistics. */
        void l1(long l1Off, int l1Size, boolean active) {
            inc(l1Off, 8L * l1Size);
            long[] l1 = active ? img.l1 : img.readLongs(l1Off, l1Size);
            for (int i = 0; i < l1.length; i++) {
                long e = l1[i];
                long l2off = e & Qcow2Image.OFFSET_MASK;
                if (l2off == 0) {
                    continue;
                }
                if ((l2off & img.csMask) != 0) {
                    corruption("L2 table offset " + l2off + " is not cluster-aligned (L1 index " + i + ")");
                    continue;
                }
                inc(l2off, img.cs);
                nextContiguous = 0; // qemu-img counts fragmentation within each L2 table
                long[] l2 = active ? img.l2Table(l2off).l2 : img.readLongs(l2off, img.cs / 8);
                int entries = img.l2Entries;
                for (int j = 0; j < entries; j++) {
                    long g = ((long) i << img.l2Bits) + j;
                    long le = img.extL2 ? l2[2 * j] : l2[j];
                    long bm = img.extL2 ? l2[2 * j + 1] : 0;
                    entry(g, le, bm, active);
                }
            }
        }

        void entry(long g, long e, long bm, boolean active) {
            int k = img.kind(e);
            switch (k) {
                case Qcow2Image.K_COMPRESSED -> {
                    if (img.external) {
                        corruption("compressed cluster with an external data file (guest cluster " + g + ")");
                        return;
                    }
                    long[] r = img.compressedRange(e);
                    inc(r[0] & ~511L, r[1] - (r[0] & ~511L));
                    if (active) {
                        allocated++;
                        compressed++;
                        fragmented++;
                    }
                }
                case Qcow2Image.K_NORMAL, Qcow2Image.K_ZERO_ALLOC -> {
                    long host = e & Qcow2Image.OFFSET_MASK;
                    if ((host & img.csMask) != 0) {
                        corruption("offset=" + host + ": cluster is not properly aligned; L2 entry corrupted (guest cluster " + g + ")");
                        return;
                    }
                    if (!img.external) {
                        inc(host, img.cs);
                    }
                    if (active) {
                        allocated++;
                        if (nextContiguous != 0 && host != nextContiguous) {
                            fragmented++;
                        }
                        nextContiguous = host + img.cs;
                    }
                }
                default -> {
                    if (img.extL2 && (bm & 0xffffffffL) != 0) {
                        corruption("unallocated cluster " + g + " has allocated subclusters");
                    }
                }
            }
            if (img.extL2 && k != Qcow2Image.K_COMPRESSED && ((bm & 0xffffffffL) & (bm >>> 32)) != 0) {
                corruption("subclusters of cluster " + g + " are both allocated and zero");
            }
        }
    }

    /** Counts the references of every host cluster. Caller holds the image's metadata lock. */
    private static Walk walk(Qcow2Image img) {
        Walk w = new Walk(img);
        Qcow2Header h = img.hdr;
        w.inc(0, img.cs);
        w.l1(h.l1TableOffset, h.l1Size, true);
        // internal snapshots
        if (h.nbSnapshots > 0) {
            long p = h.snapshotsOffset;
            for (int s = 0; s < h.nbSnapshots; s++) {
                ByteBuffer b = ByteBuffer.wrap(img.file.read(p, 40));
                long l1Off = b.getLong(0);
                int l1Size = b.getInt(8);
                int idLen = b.getShort(12) & 0xffff;
                int nameLen = b.getShort(14) & 0xffff;
                int extra = b.getInt(36);
                w.l1(l1Off, l1Size, false);
                p += (40L + extra + idLen + nameLen + 7) & ~7L;
            }
            w.inc(h.snapshotsOffset, p - h.snapshotsOffset);
        }
        // refcount structures
        w.inc(img.rtOffset, (long) img.rtClusters * img.cs);
        long fileLen = img.file.length();
        for (int i = 0; i < img.rt.length; i++) {
            long off = img.rt[i] & Qcow2Image.RT_OFFSET_MASK;
            if (off == 0) {
                continue;
            }
            if ((off & img.csMask) != 0) {
                w.corruption("refcount block " + i + " is not cluster-aligned; refcount table entry corrupted");
                continue;
            }
            if (off >= fileLen) {
                w.corruption("refcount block " + i + " is outside the image");
            }
            w.inc(off, img.cs);
        }
        // bitmaps
        img.bitmaps.addReferences(w::inc);
        return w;
    }

    static Result check(Qcow2Image img) {
        img.metaLock().lock();
        try {
            Walk w = walk(img);
            long fileClusters = (img.file.length() + img.csMask) >>> img.cb;
            long leaks = 0;
            long corruptions = w.corruptions;
            long highest = -1;
            long n = Math.max(fileClusters, w.refs.length);
            for (long c = 0; c < n; c++) {
                long stored = img.refcount(c);
                long computed = c < w.refs.length ? w.refs[(int) c] : 0;
                if (c >= fileClusters && computed == 0) {
                    continue;
                }
                if (stored > 0 || computed > 0) {
                    highest = Math.max(highest, c);
                }
                if (stored != computed) {
                    if (stored < computed) {
                        corruptions++;
                        w.messages.add("ERROR cluster " + c + " refcount=" + stored + " reference=" + computed);
                    } else {
                        leaks++;
                        if (w.messages.size() < 1000) {
                            w.messages.add("Leaked cluster " + c + " refcount=" + stored + " reference=" + computed);
                        }
                    }
                }
            }
            corruptions += copiedFlags(img, w);
            long total = (img.size + img.csMask) >>> img.cb;
            return new Result(corruptions, leaks, 0, total, w.allocated, w.fragmented, w.compressed,
                    (highest + 1) << img.cb, w.messages);
        } finally {
            img.metaLock().unlock();
        }
    }

    /** OFLAG_COPIED must be set exactly where the refcount is 1 (active L1 and L2 tables). */
    private static long copiedFlags(Qcow2Image img, Walk w) {
        long bad = 0;
        for (int i = 0; i < img.l1.length; i++) {
            long e = img.l1[i];
            long l2off = e & Qcow2Image.OFFSET_MASK;
            if (l2off == 0 || (l2off & img.csMask) != 0) {
                continue;
            }
            boolean one = img.refcount(l2off >>> img.cb) == 1;
            if (one != ((e & Qcow2Image.COPIED) != 0)) {
                bad++;
                w.messages.add("ERROR OFLAG_COPIED L2 cluster: l1_index=" + i + " l1_entry=" + Long.toHexString(e));
            }
            long[] l2 = img.l2Table(l2off).l2;
            for (int j = 0; j < img.l2Entries; j++) {
                long le = img.extL2 ? l2[2 * j] : l2[j];
                int k = img.kind(le);
                if ((k != Qcow2Image.K_NORMAL && k != Qcow2Image.K_ZERO_ALLOC) || img.external) {
                    continue;
                }
                long host = le & Qcow2Image.OFFSET_MASK;
                if ((host & img.csMask) != 0) {
                    continue;
                }
                boolean r1 = img.refcount(host >>> img.cb) == 1;
                if (r1 != ((le & Qcow2Image.COPIED) != 0)) {
                    bad++;
                    w.messages.add("ERROR OFLAG_COPIED data cluster: l2_entry=" + Long.toHexString(le));
                }
            }
        }
        return bad;
    }

    /**
     * Makes every stored refcount equal to the references (after a crash with lazy refcounts,
     * or for {@code check -r}): the fixes are computed first, then applied through the normal
     * refcount code, which may allocate refcount blocks or grow the table (never onto a
     * referenced cluster), then flushed.
     */
    static int repair(Qcow2Image img) {
        List<long[]> fixes = new ArrayList<>();
        img.metaLock().lock();
        try {
            Walk w = walk(img);
            if (w.corruptions > 0) {
                throw new Qcow2Exception(img.path + ": the image has structural corruption (" + w.messages.getFirst()
                        + "); repair it with qemu-img check -r all");
            }
            long fileClusters = (img.file.length() + img.csMask) >>> img.cb;
            long n = Math.max(fileClusters, w.refs.length);
            long[] inUse = new long[(int) ((n + 63) >>> 6) + 1];
            for (int c = 0; c < w.refs.length; c++) {
                if (w.refs[c] > 0) {
                    inUse[c >>> 6] |= 1L << c;
                }
            }
            for (long c = 0; c < n; c++) {
                long stored = img.refcount(c);
                long computed = c < w.refs.length ? w.refs[(int) c] : 0;
                if (stored != computed) {
                    fixes.add(new long[]{c, computed});
                }
            }
            img.setRepairInUse(inUse);
            try {
                for (long[] f : fixes) {
                    img.setRefcount(f[0], f[1], -1, -1);
                }
            } finally {
                img.setRepairInUse(null);
            }
            img.resetFreeHint();
        } finally {
            img.metaLock().unlock();
        }
        img.flushMetadata();
        return fixes.size();
    }
}
