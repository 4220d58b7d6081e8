package io.vhostblk.linux;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/** Block-device ioctls (linux/fs.h): size, sector sizes, discard. */
public final class BlockDevice {
    static final long BLKSSZGET = 0x1268;
    static final long BLKDISCARD = 0x1277;
    static final long BLKPBSZGET = 0x127b;
    static final long BLKGETSIZE64 = 0x80081272L;

    private BlockDevice() {
    }

    /** The device's size in bytes. */
    public static long size(int fd) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_LONG);
            int r = Libc.ioctlRaw(fd, BLKGETSIZE64, v);
            if (r < 0) {
                throw new ErrnoException("ioctl(BLKGETSIZE64)", -r);
            }
            return v.get(JAVA_LONG, 0);
        }
    }

    /** The logical block size (the smallest unit O_DIRECT accepts). */
    public static int logicalBlockSize(int fd) {
        return intIoctl(fd, BLKSSZGET, "BLKSSZGET");
    }

    public static int physicalBlockSize(int fd) {
        return intIoctl(fd, BLKPBSZGET, "BLKPBSZGET");
    }

    private static int intIoctl(int fd, long req, String name) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            int r = Libc.ioctlRaw(fd, req, v);
            if (r < 0) {
                throw new ErrnoException("ioctl(" + name + ")", -r);
            }
            return v.get(JAVA_INT, 0);
        }
    }

    /** BLKDISCARD of [offset, offset+len); returns 0 or -errno. {@code arg} is a 16-byte scratch segment. */
    public static int discardRaw(int fd, long offset, long len, MemorySegment arg) {
        arg.set(JAVA_LONG, 0, offset);
        arg.set(JAVA_LONG, 8, len);
        return Libc.ioctlRaw(fd, BLKDISCARD, arg);
    }
}
