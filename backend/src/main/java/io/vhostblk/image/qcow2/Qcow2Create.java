package io.vhostblk.image.qcow2;

import io.vhostblk.image.CacheMode;
import io.vhostblk.linux.Libc;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;

/** Creates qcow2 images laid out as qemu-img lays them out (header, refcount table and block, L1). */
public final class Qcow2Create {
    /** What {@code qemu-img create -f qcow2 -o ...} takes, with its defaults. */
    public static final class Spec {
        public long size = -1;
        public int clusterSize = 65536;
        public int version = 3;
        public int refcountBits = 16;
        public boolean extendedL2;
        public boolean lazyRefcounts;
        public String compressionType = "zlib";
        public String backingFile;
        public String backingFormat;
        public String dataFile;
        public boolean dataFileRaw;
        public String preallocation = "off";

        /** Applies one {@code -o} option; throws for unknown names or bad values. */
        public void option(String name, String value) {
            switch (name) {
                case "size" -> size = parseSize(value);
                case "cluster_size" -> clusterSize = (int) parseSize(value);
                case "compat" -> version = switch (value) {
                    case "0.10", "v2" -> 2;
                    case "1.1", "v3" -> 3;
                    default -> throw new IllegalArgumentException("compat must be 0.10 or 1.1, not " + value);
                };
                case "refcount_bits" -> refcountBits = Integer.parseInt(value);
                case "extended_l2" -> extendedL2 = onOff(name, value);
                case "lazy_refcounts" -> lazyRefcounts = onOff(name, value);
                case "compression_type" -> compressionType = value;
                case "backing_file" -> backingFile = value;
                case "backing_fmt" -> backingFormat = value;
                case "data_file" -> dataFile = value;
                case "data_file_raw" -> dataFileRaw = onOff(name, value);
                case "preallocation" -> preallocation = value;
                default -> throw new IllegalArgumentException("unknown qcow2 option '" + name + "'");
            }
        }

        private static boolean onOff(String n, String v) {
            return switch (v) {
                case "on", "true", "yes" -> true;
                case "off", "false", "no" -> false;
                default -> throw new IllegalArgumentException(n + " must be on or off");
            };
        }
    }

    private Qcow2Create() {
    }

    /** Sizes as qemu-img reads them: bytes, or with a k/M/G/T suffix (powers of 1024). */
    public static long parseSize(String s) {
        s = s.trim();
        long mul = 1;
        char last = Character.toLowerCase(s.charAt(s.length() - 1));
        int shift = switch (last) {
            case 'k' -> 10;
            case 'm' -> 20;
            case 'g' -> 30;
            case 't' -> 40;
            case 'b' -> 0;
            default -> -1;
        };
        if (shift >= 0) {
            s = s.substring(0, s.length() - 1);
            mul = 1L << shift;
        }
        return Math.round(Double.parseDouble(s) * mul);
    }

    public static void create(String path, Spec spec) {
        int cs = spec.clusterSize;
        if (Integer.bitCount(cs) != 1 || cs < 512 || cs > (2 << 20)) {
            throw new IllegalArgumentException("cluster size must be a power of two between 512 and 2M");
        }
        int cb = Integer.numberOfTrailingZeros(cs);
        if (Integer.bitCount(spec.refcountBits) != 1 || spec.refcountBits > 64) {
            throw new IllegalArgumentException("refcount_bits must be a power of two up to 64");
        }
        int order = Integer.numberOfTrailingZeros(spec.refcountBits);
        if (spec.version == 2 && (order != 4 || spec.extendedL2 || spec.lazyRefcounts || spec.dataFile != null
                || !spec.compressionType.equals("zlib"))) {
            throw new IllegalArgumentException("compat=0.10 supports none of refcount_bits other than 16, extended_l2, "
                    + "lazy_refcounts, data_file, compression_type");
        }
        if (spec.extendedL2 && cs < 16384) {
            throw new IllegalArgumentException("extended_l2 needs a cluster size of at least 16k");
        }
        if (spec.dataFileRaw && spec.dataFile == null) {
            throw new IllegalArgumentException("data_file_raw needs data_file");
        }
        if (spec.dataFileRaw && spec.backingFile != null) {
            throw new IllegalArgumentException("data_file_raw cannot be used with a backing file");
        }
        if (!spec.preallocation.equals("off") && !spec.preallocation.equals("metadata")) {
            throw new IllegalArgumentException("preallocation must be off or metadata");
        }
        int ctype = switch (spec.compressionType) {
            case "zlib" -> 0;
            case "zstd" -> 1;
            default -> throw new IllegalArgumentException("compression_type must be zlib or zstd");
        };
        long size = spec.size;
        if (size < 0) {
            if (spec.backingFile == null) {
                throw new IllegalArgumentException("no size given and no backing file to take it from");
            }
            size = backingSize(path, spec);
        }
        if (size % 512 != 0) {
            throw new IllegalArgumentException("size must be a multiple of 512");
        }
        int l2Entries = cs / (spec.extendedL2 ? 16 : 8);
        long l1Size = (size + (long) cs * l2Entries - 1) / ((long) cs * l2Entries);
        if (l1Size * 8 > 32L << 20) {
            throw new IllegalArgumentException("image too large for this cluster size");
        }
        long l1Clusters = Math.max(1, (l1Size * 8 + cs - 1) / cs);
        long rbEntries = (long) cs * 8 / spec.refcountBits;
        long rtClusters = 1;
        long rbCount = 1;
        for (;;) {
            long meta = 1 + rtClusters + rbCount + l1Clusters;
            long needRb = (meta + rbEntries - 1) / rbEntries;
            long needRt = Math.max(1, (needRb * 8 + cs - 1) / cs);
            if (needRb == rbCount && needRt == rtClusters) {
                break;
            }
            rbCount = needRb;
            rtClusters = needRt;
        }
        long rtOff = cs;
        long rbOff = rtOff + rtClusters * cs;
        long l1Off = rbOff + rbCount * cs;
        long metaClusters = 1 + rtClusters + rbCount + l1Clusters;

        Qcow2Header h = new Qcow2Header();
        h.version = spec.version;
        h.clusterBits = cb;
        h.size = size;
        h.l1Size = (int) l1Size;
        h.l1TableOffset = l1Off;
        h.refcountTableOffset = rtOff;
        h.refcountTableClusters = (int) rtClusters;
        h.refcountOrder = order;
        h.headerLength = spec.version >= 3 ? (ctype != 0 ? 112 : 104) : 72;
        h.compressionType = ctype;
        if (ctype != 0) {
            h.incompatible |= Qcow2Header.INCOMPAT_COMPRESSION;
        }
        if (spec.extendedL2) {
            h.incompatible |= Qcow2Header.INCOMPAT_EXTL2;
        }
        if (spec.dataFile != null) {
            h.incompatible |= Qcow2Header.INCOMPAT_DATA_FILE;
            h.dataFile = spec.dataFile;
            if (spec.dataFileRaw) {
                h.autoclear |= Qcow2Header.AUTOCLEAR_DATA_FILE_RAW;
            }
        }
        if (spec.lazyRefcounts) {
            h.compatible |= Qcow2Header.COMPAT_LAZY_REFCOUNTS;
        }
        h.backingFile = spec.backingFile;
        h.backingFormat = spec.backingFile != null ? spec.backingFormat : null;
        if (spec.version >= 3) {
            h.otherExtensions.add(Qcow2Header.featureTable());
        }
        byte[] header = h.serialize();

        try {
            if (spec.dataFile != null) {
                String dp = Qcow2Image.resolveRelative(path, spec.dataFile);
                int dfd = Libc.open(dp, Libc.O_RDWR | Libc.O_CREAT | Libc.O_CLOEXEC, 0644);
                try {
                    Libc.ftruncate(dfd, 0);
                    Libc.ftruncate(dfd, size);
                } finally {
                    Libc.close(dfd);
                }
            }
            int fd = Libc.open(path, Libc.O_RDWR | Libc.O_CREAT | Libc.O_CLOEXEC, 0644);
            Libc.close(fd);
            try (HostFile f = HostFile.open(path, false, CacheMode.WRITEBACK)) {
                f.truncate(0);
                f.write(0, header);
                ByteBuffer rt = ByteBuffer.allocate((int) (rtClusters * cs));
                for (int i = 0; i < rbCount; i++) {
                    rt.putLong(8 * i, rbOff + (long) i * cs);
                }
                f.write(rtOff, rt.array());
                byte[][] rbs = new byte[(int) rbCount][cs];
                Qcow2Image.rcPutStatic(order, rbs, rbEntries, metaClusters);
                for (int i = 0; i < rbCount; i++) {
                    f.write(rbOff + (long) i * cs, rbs[i]);
                }
                f.truncate(metaClusters * cs);
                f.sync();
            }
        } catch (RuntimeException e) {
            throw new Qcow2Exception("cannot create " + path + ": " + e.getMessage(), e);
        }
        // a raw data file is the image: every cluster is mapped to its own offset, as qemu-img does
        if (spec.preallocation.equals("metadata") || spec.dataFileRaw) {
            try (Qcow2Image img = Qcow2Image.open(path, false, Options.defaults())) {
                img.preallocateMetadata();
            }
        }
    }

    private static long backingSize(String path, Spec spec) {
        String bp = Qcow2Image.resolveRelative(path, spec.backingFile);
        if (!Files.exists(Path.of(bp))) {
            throw new IllegalArgumentException("backing file " + bp + " does not exist");
        }
        String fmt = spec.backingFormat;
        try (HostFile probe = HostFile.open(bp, true, CacheMode.WRITEBACK)) {
            if (fmt == null) {
                fmt = Qcow2Header.hasMagic(probe.read(0, 4)) ? "qcow2" : "raw";
            }
            if (fmt.equals("raw")) {
                return probe.length();
            }
        }
        try (Qcow2Image b = Qcow2Image.open(bp, true, Options.defaults())) {
            return b.size();
        }
    }
}
