package io.vhostblk.image.qcow2;

import io.vhostblk.linux.Errno;
import io.vhostblk.linux.ErrnoException;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * Persistent dirty bitmaps (docs/interop/qcow2.txt "Bitmaps"). While an image is open
 * read-write, every consistent bitmap with the {@code auto} flag is loaded into memory, marked
 * {@code in_use} on disk, updated by every write, zero-write and discard, and stored back (with
 * {@code in_use} cleared) on clean close. A crash therefore leaves the bitmap marked in_use,
 * which QEMU treats as inconsistent, as the format requires.
 */
final class Bitmaps {
    static final int FLAG_IN_USE = 1;
    static final int FLAG_AUTO = 2;
    static final int FLAG_EXTRA_COMPATIBLE = 4;
    static final long TABLE_OFFSET_MASK = 0x00fffffffffffe00L;

    /** One directory entry and, when enabled, its bits in memory. */
    static final class Bitmap {
        long tableOffset;
        int tableSize;
        int flags;
        int type;
        int granularityBits;
        byte[] extra;
        String name;
        long[] bits;

        long granularity() {
            return 1L << granularityBits;
        }
    }

    /** A bitmap as info shows it. */
    record Info(String name, long granularity, int flags) {
        List<String> flagNames() {
            List<String> l = new ArrayList<>();
            if ((flags & FLAG_IN_USE) != 0) {
                l.add("in-use");
            }
            if ((flags & FLAG_AUTO) != 0) {
                l.add("auto");
            }
            return l;
        }
    }

    /** Where check counts references. */
    interface RefSink {
        void inc(long off, long len);
    }

    private final Qcow2Image img;
    private final List<Bitmap> all = new ArrayList<>();
    private final List<Bitmap> enabled = new ArrayList<>();
    private boolean loaded;

    Bitmaps(Qcow2Image img) {
        this.img = img;
    }

    private synchronized void load() {
        if (loaded) {
            return;
        }
        loaded = true;
        Qcow2Header h = img.hdr;
        if (!h.bitmapsExt || h.nbBitmaps == 0) {
            return;
        }
        if (h.bitmapDirectorySize > 64L << 20) {
            throw new Qcow2Exception(img.path + ": bitmap directory too large");
        }
        ByteBuffer d = ByteBuffer.wrap(img.file.read(h.bitmapDirectoryOffset, (int) h.bitmapDirectorySize));
        int p = 0;
        for (int i = 0; i < h.nbBitmaps; i++) {
            Bitmap b = new Bitmap();
            b.tableOffset = d.getLong(p);
            b.tableSize = d.getInt(p + 8);
            b.flags = d.getInt(p + 12);
            b.type = d.get(p + 16) & 0xff;
            b.granularityBits = d.get(p + 17) & 0xff;
            int nameSize = d.getShort(p + 18) & 0xffff;
            int extraSize = d.getInt(p + 20);
            b.extra = new byte[extraSize];
            d.get(p + 24, b.extra);
            byte[] n = new byte[nameSize];
            d.get(p + 24 + extraSize, n);
            b.name = new String(n, StandardCharsets.UTF_8);
            all.add(b);
            p += (24 + extraSize + nameSize + 7) & ~7;
        }
    }

    synchronized List<Info> list() {
        load();
        List<Info> l = new ArrayList<>();
        for (Bitmap b : all) {
            l.add(new Info(b.name, b.granularity(), b.flags));
        }
        return l;
    }

    private boolean consistent() {
        return (img.hdr.autoclear & Qcow2Header.AUTOCLEAR_BITMAPS) != 0;
    }

    private long bitCount(Bitmap b) {
        return (img.size + b.granularity() - 1) >>> b.granularityBits;
    }

    /** Read-write open: loads the auto bitmaps and marks them in use on disk. */
    synchronized void loadForWriting() {
        load();
        if (all.isEmpty() || !consistent()) {
            return;
        }
        for (Bitmap b : all) {
            boolean usable = (b.flags & FLAG_AUTO) != 0 && (b.flags & FLAG_IN_USE) == 0 && b.type == 1
                    && (b.extra.length == 0 || (b.flags & FLAG_EXTRA_COMPATIBLE) != 0);
            if (!usable) {
                continue;
            }
            b.bits = readBits(b);
            b.flags |= FLAG_IN_USE;
            enabled.add(b);
        }
        if (!enabled.isEmpty()) {
            img.file.write(img.hdr.bitmapDirectoryOffset, directory());
            img.file.sync();
        }
    }

    private long[] readBits(Bitmap b) {
        long nbits = bitCount(b);
        long bytes = (nbits + 7) / 8;
        long[] bits = new long[(int) ((nbits + 63) / 64)];
        long[] table = img.readLongs(b.tableOffset, b.tableSize);
        int cs = img.cs;
        for (int i = 0; i < table.length; i++) {
            long off = table[i] & TABLE_OFFSET_MASK;
            long start = (long) i * cs;
            int n = (int) Math.min(cs, bytes - start);
            if (n <= 0) {
                break;
            }
            byte[] chunk;
            if (off != 0) {
                chunk = img.file.read(off, n);
            } else if ((table[i] & 1) != 0) {
                chunk = new byte[n];
                java.util.Arrays.fill(chunk, (byte) 0xff);
            } else {
                continue;
            }
            for (int j = 0; j < n; j++) {
                long byteIdx = start + j;
                bits[(int) (byteIdx >>> 3)] |= (chunk[j] & 0xffL) << ((byteIdx & 7) * 8);
            }
        }
        // tail bits past the disk's end stay clear
        if ((nbits & 63) != 0) {
            bits[bits.length - 1] &= (1L << (nbits & 63)) - 1;
        }
        return bits;
    }

    /** Records a change of guest bytes [off, off+len) in every enabled bitmap. */
    void markDirty(long off, long len) {
        if (len <= 0 || enabled.isEmpty()) {
            return;
        }
        synchronized (this) {
            for (Bitmap b : enabled) {
                long first = off >>> b.granularityBits;
                long last = (off + len - 1) >>> b.granularityBits;
                for (long i = first; i <= last; i++) {
                    b.bits[(int) (i >>> 6)] |= 1L << i;
                }
            }
        }
    }

    /** True if bit {@code i} of bitmap {@code name} is set in memory (tests). */
    synchronized boolean isDirty(String name, long guestOffset) {
        for (Bitmap b : enabled) {
            if (b.name.equals(name)) {
                long i = guestOffset >>> b.granularityBits;
                return (b.bits[(int) (i >>> 6)] & (1L << i)) != 0;
            }
        }
        throw new IllegalArgumentException("no enabled bitmap " + name);
    }

    private byte[] directory() {
        int size = 0;
        for (Bitmap b : all) {
            size += (24 + b.extra.length + b.name.getBytes(StandardCharsets.UTF_8).length + 7) & ~7;
        }
        ByteBuffer d = ByteBuffer.allocate(size);
        int p = 0;
        for (Bitmap b : all) {
            byte[] n = b.name.getBytes(StandardCharsets.UTF_8);
            d.putLong(p, b.tableOffset);
            d.putInt(p + 8, b.tableSize);
            d.putInt(p + 12, b.flags);
            d.put(p + 16, (byte) b.type);
            d.put(p + 17, (byte) b.granularityBits);
            d.putShort(p + 18, (short) n.length);
            d.putInt(p + 20, b.extra.length);
            d.put(p + 24, b.extra);
            d.put(p + 24 + b.extra.length, n);
            p += (24 + b.extra.length + n.length + 7) & ~7;
        }
        return d.array();
    }

    /**
     * Clean close: writes each enabled bitmap's data (into its clusters, allocating where a
     * cluster was all zeros), makes it durable, points the table at it, then clears in_use.
     */
    synchronized void storeOnClose() {
        if (enabled.isEmpty()) {
            return;
        }
        int cs = img.cs;
        List<long[]> tables = new ArrayList<>();
        List<Long> frees = new ArrayList<>();
        for (Bitmap b : enabled) {
            long nbits = bitCount(b);
            long bytes = (nbits + 7) / 8;
            long[] table = img.readLongs(b.tableOffset, b.tableSize);
            for (int i = 0; i < table.length; i++) {
                long start = (long) i * cs;
                int n = (int) Math.max(0, Math.min(cs, bytes - start));
                byte[] chunk = new byte[cs];
                boolean any = false;
                for (int j = 0; j < n; j++) {
                    long byteIdx = start + j;
                    chunk[j] = (byte) (b.bits[(int) (byteIdx >>> 3)] >>> ((byteIdx & 7) * 8));
                    any |= chunk[j] != 0;
                }
                long old = table[i] & TABLE_OFFSET_MASK;
                if (!any) {
                    if (old != 0) {
                        frees.add(old >>> img.cb);
                    }
                    table[i] = 0;
                    continue;
                }
                long off = old;
                if (off == 0) {
                    img.metaLock().lock();
                    try {
                        off = img.allocRun(1) << img.cb;
                    } finally {
                        img.metaLock().unlock();
                    }
                }
                img.file.write(off, chunk);
                table[i] = off;
            }
            tables.add(table);
        }
        // data and the refcounts of new clusters durable before any table points at them
        img.flushMetadata();
        for (int k = 0; k < enabled.size(); k++) {
            long[] t = tables.get(k);
            img.file.write(enabled.get(k).tableOffset, Qcow2Image.encodeLongs(t, 0, t.length));
        }
        img.file.sync();
        for (Bitmap b : enabled) {
            b.flags &= ~FLAG_IN_USE;
        }
        img.file.write(img.hdr.bitmapDirectoryOffset, directory());
        img.file.sync();
        img.metaLock().lock();
        try {
            for (long c : frees) {
                img.addPendingFree(c);
            }
        } finally {
            img.metaLock().unlock();
        }
        enabled.clear();
    }

    /**
     * Adds a dirty bitmap, enabled (auto) from now on: an all-zero bitmap table, a new directory
     * and header extension (the old directory's clusters are freed after the switch is durable).
     */
    synchronized void create(String name, long granularity) {
        load();
        if (img.hdr.version < 3) {
            throw new Qcow2Exception(img.path + ": bitmaps need a version 3 (compat=1.1) image");
        }
        if (img.readOnly) {
            throw new ErrnoException("bitmap", Errno.EPERM, img.path + " is open read-only");
        }
        if (Long.bitCount(granularity) != 1 || granularity < 512 || granularity > (1L << 31)) {
            throw new IllegalArgumentException("granularity must be a power of two from 512 to 2G");
        }
        if (name.isEmpty() || name.getBytes(StandardCharsets.UTF_8).length > 1023) {
            throw new IllegalArgumentException("bad bitmap name");
        }
        for (Bitmap b : all) {
            if (b.name.equals(name)) {
                throw new IllegalArgumentException("bitmap " + name + " already exists");
            }
        }
        if (!all.isEmpty() && !consistent()) {
            throw new Qcow2Exception(img.path + ": the existing bitmaps are inconsistent; remove them first (qemu-img bitmap --remove)");
        }
        Bitmap b = new Bitmap();
        b.name = name;
        b.type = 1;
        b.granularityBits = Long.numberOfTrailingZeros(granularity);
        b.extra = new byte[0];
        b.flags = FLAG_AUTO | FLAG_IN_USE;
        long bytes = (bitCount(b) + 7) / 8;
        b.tableSize = (int) Math.max(1, (bytes + img.cs - 1) / img.cs);
        int tableClusters = (int) ((b.tableSize * 8L + img.cs - 1) / img.cs);
        b.bits = new long[(int) ((bitCount(b) + 63) / 64)];
        all.add(b);
        byte[] dir = directory();
        int dirClusters = (dir.length + img.cs - 1) / img.cs;
        long dirOff;
        img.metaLock().lock();
        try {
            b.tableOffset = img.allocRun(tableClusters) << img.cb;
            dirOff = img.allocRun(dirClusters) << img.cb;
        } finally {
            img.metaLock().unlock();
        }
        img.file.write(b.tableOffset, new byte[tableClusters * img.cs]);
        byte[] dirPadded = new byte[dirClusters * img.cs];
        System.arraycopy(dir, 0, dirPadded, 0, dir.length);
        img.file.write(dirOff, dirPadded);
        img.flushMetadata();
        Qcow2Header h = img.hdr;
        long oldDir = h.bitmapsExt ? h.bitmapDirectoryOffset : 0;
        long oldDirSize = h.bitmapsExt ? h.bitmapDirectorySize : 0;
        h.bitmapsExt = true;
        h.nbBitmaps = all.size();
        h.bitmapDirectoryOffset = dirOff;
        h.bitmapDirectorySize = dir.length;
        h.autoclear |= Qcow2Header.AUTOCLEAR_BITMAPS;
        img.file.write(0, h.serialize());
        img.file.sync();
        enabled.add(b);
        if (oldDir != 0) {
            img.metaLock().lock();
            try {
                for (long c = oldDir >>> img.cb; c <= (oldDir + oldDirSize - 1) >>> img.cb; c++) {
                    img.addPendingFree(c);
                }
            } finally {
                img.metaLock().unlock();
            }
        }
    }

    synchronized void addReferences(RefSink sink) {
        load();
        Qcow2Header h = img.hdr;
        if (!h.bitmapsExt || all.isEmpty()) {
            return;
        }
        sink.inc(h.bitmapDirectoryOffset, h.bitmapDirectorySize);
        for (Bitmap b : all) {
            sink.inc(b.tableOffset, 8L * b.tableSize);
            for (long e : img.readLongs(b.tableOffset, b.tableSize)) {
                long off = e & TABLE_OFFSET_MASK;
                if (off != 0) {
                    sink.inc(off, img.cs);
                }
            }
        }
    }
}
