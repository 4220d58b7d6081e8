package io.vhostblk.image.qcow2;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The qcow2 header (docs/interop/qcow2.txt "Header") with its header extensions and the backing
 * file name, parsed from and serialized to the image's first cluster.
 */
final class Qcow2Header {
    static final int MAGIC = 0x514649fb;

    static final long INCOMPAT_DIRTY = 1;
    static final long INCOMPAT_CORRUPT = 2;
    static final long INCOMPAT_DATA_FILE = 4;
    static final long INCOMPAT_COMPRESSION = 8;
    static final long INCOMPAT_EXTL2 = 16;
    static final long INCOMPAT_KNOWN = 31;
    static final long COMPAT_LAZY_REFCOUNTS = 1;
    static final long AUTOCLEAR_BITMAPS = 1;
    static final long AUTOCLEAR_DATA_FILE_RAW = 2;
    static final long AUTOCLEAR_KNOWN = 3;

    static final int EXT_END = 0;
    static final int EXT_BACKING_FORMAT = 0xe2792aca;
    static final int EXT_FEATURE_TABLE = 0x6803f857;
    static final int EXT_BITMAPS = 0x23852875;
    static final int EXT_CRYPTO = 0x0537be77;
    static final int EXT_DATA_FILE = 0x44415441;

    int version;
    long backingFileOffset;
    int backingFileSize;
    int clusterBits;
    long size;
    int cryptMethod;
    int l1Size;
    long l1TableOffset;
    long refcountTableOffset;
    int refcountTableClusters;
    int nbSnapshots;
    long snapshotsOffset;
    long incompatible;
    long compatible;
    long autoclear;
    int refcountOrder = 4;
    int headerLength = 72;
    int compressionType;

    String backingFile;
    String backingFormat;
    String dataFile;
    /** Bitmaps extension (present when {@code bitmapsExt}). */
    boolean bitmapsExt;
    int nbBitmaps;
    long bitmapDirectorySize;
    long bitmapDirectoryOffset;
    /** Extensions kept verbatim (feature table, unknown ones): type, payload. */
    final List<Extension> otherExtensions = new ArrayList<>();

    record Extension(int type, byte[] data) {
    }

    static boolean hasMagic(byte[] first) {
        return first.length >= 4 && ByteBuffer.wrap(first).getInt(0) == MAGIC;
    }

    static Qcow2Header parse(byte[] b, String path) {
        ByteBuffer bb = ByteBuffer.wrap(b);
        if (b.length < 72 || bb.getInt(0) != MAGIC) {
            throw new Qcow2Exception(path + " is not a qcow2 image (bad magic)");
        }
        Qcow2Header h = new Qcow2Header();
        h.version = bb.getInt(4);
        if (h.version != 2 && h.version != 3) {
            throw new Qcow2Exception(path + ": unsupported qcow2 version " + h.version);
        }
        h.backingFileOffset = bb.getLong(8);
        h.backingFileSize = bb.getInt(16);
        h.clusterBits = bb.getInt(20);
        h.size = bb.getLong(24);
        h.cryptMethod = bb.getInt(32);
        h.l1Size = bb.getInt(36);
        h.l1TableOffset = bb.getLong(40);
        h.refcountTableOffset = bb.getLong(48);
        h.refcountTableClusters = bb.getInt(56);
        h.nbSnapshots = bb.getInt(60);
        h.snapshotsOffset = bb.getLong(64);
        if (h.version >= 3) {
            h.incompatible = bb.getLong(72);
            h.compatible = bb.getLong(80);
            h.autoclear = bb.getLong(88);
            h.refcountOrder = bb.getInt(96);
            h.headerLength = bb.getInt(100);
            if (h.headerLength < 104 || h.headerLength % 8 != 0 || h.headerLength > b.length) {
                throw new Qcow2Exception(path + ": bad header_length " + h.headerLength);
            }
            if (h.headerLength > 104) {
                h.compressionType = b[104] & 0xff;
            }
        }
        if (h.clusterBits < 9 || h.clusterBits > 21) {
            throw new Qcow2Exception(path + ": unsupported cluster size 2^" + h.clusterBits + " (512 B to 2 MiB)");
        }
        if (h.refcountOrder < 0 || h.refcountOrder > 6) {
            throw new Qcow2Exception(path + ": bad refcount_order " + h.refcountOrder);
        }
        if ((h.incompatible & ~INCOMPAT_KNOWN) != 0) {
            throw new Qcow2Exception(path + ": unsupported incompatible features 0x"
                    + Long.toHexString(h.incompatible & ~INCOMPAT_KNOWN));
        }
        if (h.cryptMethod != 0) {
            throw new Qcow2Exception(path + ": encrypted qcow2 images are not supported");
        }
        if ((h.incompatible & INCOMPAT_COMPRESSION) != 0 && h.compressionType == 0) {
            throw new Qcow2Exception(path + ": compression type bit set but compression_type is zlib");
        }
        if (h.compressionType > 1) {
            throw new Qcow2Exception(path + ": unknown compression type " + h.compressionType);
        }
        if ((h.incompatible & INCOMPAT_EXTL2) != 0 && h.clusterBits < 14) {
            throw new Qcow2Exception(path + ": extended L2 entries need clusters of at least 16 KiB");
        }
        int cs = 1 << h.clusterBits;
        // header extensions
        int p = h.version >= 3 ? h.headerLength : 72;
        int limit = Math.min(b.length, cs);
        while (p + 8 <= limit) {
            int type = bb.getInt(p);
            int len = bb.getInt(p + 4);
            if (type == EXT_END) {
                break;
            }
            if (len < 0 || p + 8 + len > limit) {
                throw new Qcow2Exception(path + ": header extension 0x" + Integer.toHexString(type) + " overruns the header cluster");
            }
            byte[] data = new byte[len];
            System.arraycopy(b, p + 8, data, 0, len);
            switch (type) {
                case EXT_BACKING_FORMAT -> h.backingFormat = new String(data, StandardCharsets.UTF_8);
                case EXT_DATA_FILE -> h.dataFile = new String(data, StandardCharsets.UTF_8);
                case EXT_BITMAPS -> {
                    if (len < 24) {
                        throw new Qcow2Exception(path + ": short bitmaps extension");
                    }
                    ByteBuffer e = ByteBuffer.wrap(data);
                    h.bitmapsExt = true;
                    h.nbBitmaps = e.getInt(0);
                    h.bitmapDirectorySize = e.getLong(8);
                    h.bitmapDirectoryOffset = e.getLong(16);
                }
                case EXT_CRYPTO -> throw new Qcow2Exception(path + ": encrypted qcow2 images are not supported");
                default -> h.otherExtensions.add(new Extension(type, data));
            }
            p += 8 + ((len + 7) & ~7);
        }
        if (h.backingFileOffset != 0) {
            if (h.backingFileSize <= 0 || h.backingFileSize > 1023 || h.backingFileOffset + h.backingFileSize > limit) {
                throw new Qcow2Exception(path + ": bad backing file name location");
            }
            h.backingFile = new String(b, (int) h.backingFileOffset, h.backingFileSize, StandardCharsets.UTF_8);
        }
        return h;
    }

    int clusterSize() {
        return 1 << clusterBits;
    }

    boolean extendedL2() {
        return (incompatible & INCOMPAT_EXTL2) != 0;
    }

    boolean externalDataFile() {
        return (incompatible & INCOMPAT_DATA_FILE) != 0;
    }

    /**
     * The first cluster as it should be written: the header, the extensions (backing format,
     * data file, bitmaps, then the kept ones) and the backing file name after them. Updates
     * {@link #backingFileOffset}/{@link #backingFileSize}.
     */
    byte[] serialize() {
        int cs = clusterSize();
        ByteBuffer bb = ByteBuffer.allocate(cs);
        int hl = version >= 3 ? Math.max(headerLength, compressionType != 0 ? 112 : 104) : 72;
        if (version >= 3) {
            headerLength = hl;
        }
        bb.putInt(0, MAGIC);
        bb.putInt(4, version);
        bb.putInt(20, clusterBits);
        bb.putLong(24, size);
        bb.putInt(32, cryptMethod);
        bb.putInt(36, l1Size);
        bb.putLong(40, l1TableOffset);
        bb.putLong(48, refcountTableOffset);
        bb.putInt(56, refcountTableClusters);
        bb.putInt(60, nbSnapshots);
        bb.putLong(64, snapshotsOffset);
        if (version >= 3) {
            bb.putLong(72, incompatible);
            bb.putLong(80, compatible);
            bb.putLong(88, autoclear);
            bb.putInt(96, refcountOrder);
            bb.putInt(100, hl);
            if (hl > 104) {
                bb.put(104, (byte) compressionType);
            }
        }
        int p = hl;
        List<Extension> exts = new ArrayList<>();
        if (backingFormat != null) {
            exts.add(new Extension(EXT_BACKING_FORMAT, backingFormat.getBytes(StandardCharsets.UTF_8)));
        }
        if (dataFile != null) {
            exts.add(new Extension(EXT_DATA_FILE, dataFile.getBytes(StandardCharsets.UTF_8)));
        }
        if (bitmapsExt) {
            ByteBuffer e = ByteBuffer.allocate(24);
            e.putInt(0, nbBitmaps);
            e.putLong(8, bitmapDirectorySize);
            e.putLong(16, bitmapDirectoryOffset);
            exts.add(new Extension(EXT_BITMAPS, e.array()));
        }
        exts.addAll(otherExtensions);
        for (Extension e : exts) {
            int padded = (e.data().length + 7) & ~7;
            if (p + 8 + padded + 8 > cs) {
                throw new Qcow2Exception("header extensions do not fit in the first cluster");
            }
            bb.putInt(p, e.type());
            bb.putInt(p + 4, e.data().length);
            bb.put(p + 8, e.data());
            p += 8 + padded;
        }
        p += 8; // end-of-extensions marker (zeros)
        if (backingFile != null) {
            byte[] name = backingFile.getBytes(StandardCharsets.UTF_8);
            if (p + name.length > cs) {
                throw new Qcow2Exception("backing file name does not fit in the first cluster");
            }
            bb.put(p, name);
            backingFileOffset = p;
            backingFileSize = name.length;
            p += name.length;
        } else {
            backingFileOffset = 0;
            backingFileSize = 0;
        }
        bb.putLong(8, backingFileOffset);
        bb.putInt(16, backingFileSize);
        byte[] out = new byte[p];
        bb.get(0, out);
        return out;
    }

    /** The feature name table QEMU writes into new images. */
    static Extension featureTable() {
        String[][] f = {
                {"0", "0", "dirty bit"}, {"0", "1", "corrupt bit"}, {"0", "2", "external data file"},
                {"0", "3", "compression type"}, {"0", "4", "extended L2 entries"},
                {"1", "0", "lazy refcounts"}, {"2", "0", "bitmaps"}, {"2", "1", "raw external data"}};
        byte[] d = new byte[48 * f.length];
        for (int i = 0; i < f.length; i++) {
            d[48 * i] = (byte) Integer.parseInt(f[i][0]);
            d[48 * i + 1] = (byte) Integer.parseInt(f[i][1]);
            byte[] n = f[i][2].getBytes(StandardCharsets.US_ASCII);
            System.arraycopy(n, 0, d, 48 * i + 2, n.length);
        }
        return new Extension(EXT_FEATURE_TABLE, d);
    }
}
