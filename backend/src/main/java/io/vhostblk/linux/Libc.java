package io.vhostblk.linux;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The C library calls vhostblk needs, bound once through {@code java.lang.foreign}.
 *
 * <p>Every call that can fail captures errno into a per-thread state segment (allocated once per
 * thread, so the hot path allocates nothing) and throws {@link ErrnoException}. Raw variants
 * ({@code *Raw}) return {@code -errno} instead of throwing, for callers on the I/O path that
 * handle EAGAIN/EINTR themselves. Linux x86_64 only: struct layouts and syscall numbers are
 * those of that ABI.
 *
 * <p>Each function is bound in its own holder class ({@code OpenFn.H}...), so a handle is
 * created the first time it is called: binding all of them eagerly cost ~0.2 s of start-up and
 * ~5 MiB of resident memory in every backend process, most of them for calls an idle backend
 * never makes. After the first call the JIT sees a constant, exactly as with a plain field.
 */
public final class Libc {
    private static final Linker LINKER = Linker.nativeLinker();
    private static final SymbolLookup LIBC = LINKER.defaultLookup();
    private static final StructLayout CAPTURE_LAYOUT = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CAPTURE_LAYOUT.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    private static final Linker.Option CAPTURE = Linker.Option.captureCallState("errno");

    private static final ThreadLocal<MemorySegment> CALL_STATE =
            ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(CAPTURE_LAYOUT));

    // --- open(2) flags
    public static final int O_RDONLY = 0;
    public static final int O_WRONLY = 1;
    public static final int O_RDWR = 2;
    public static final int O_CREAT = 0x40;
    public static final int O_EXCL = 0x80;
    public static final int O_NONBLOCK = 0x800;
    public static final int O_DSYNC = 0x1000;
    public static final int O_DIRECT = 0x4000;
    public static final int O_CLOEXEC = 0x80000;

    // --- mmap(2)
    public static final int PROT_READ = 1;
    public static final int PROT_WRITE = 2;
    public static final int MAP_SHARED = 1;
    public static final int MAP_PRIVATE = 2;
    public static final int MAP_ANONYMOUS = 0x20;
    public static final int MAP_NORESERVE = 0x4000;
    public static final int MAP_POPULATE = 0x8000;

    // --- fallocate(2)
    public static final int FALLOC_FL_KEEP_SIZE = 1;
    public static final int FALLOC_FL_PUNCH_HOLE = 2;
    public static final int FALLOC_FL_ZERO_RANGE = 0x10;

    // --- preadv2/pwritev2
    public static final int RWF_DSYNC = 2;

    // --- lseek
    public static final int SEEK_SET = 0;
    public static final int SEEK_END = 2;
    public static final int SEEK_DATA = 3;
    public static final int SEEK_HOLE = 4;

    // --- stat st_mode
    public static final int S_IFMT = 0xF000;
    public static final int S_IFREG = 0x8000;
    public static final int S_IFBLK = 0x6000;

    // --- flock / fcntl
    public static final int F_GETFD = 1;
    public static final int F_SETFD = 2;
    public static final int FD_CLOEXEC = 1;

    // --- mlockall
    public static final int MCL_CURRENT = 1;
    public static final int MCL_FUTURE = 2;

    private static final class OpenFn {
        static final MethodHandle H = capture("open",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT), Linker.Option.firstVariadicArg(2));
    }
    private static final class CloseFn {
        static final MethodHandle H = capture("close", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    }
    private static final class ReadFn {
        static final MethodHandle H = capture("read", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));
    }
    private static final class WriteFn {
        static final MethodHandle H = capture("write", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));
    }
    private static final class PreadFn {
        static final MethodHandle H = capture("pread64",
                FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG));
    }
    private static final class PwriteFn {
        static final MethodHandle H = capture("pwrite64",
                FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG));
    }
    // The iovec pointer is passed as a plain 64-bit integer: the I/O path holds raw iovec
    // addresses and must not allocate a MemorySegment wrapper per call.
    private static final class Preadv2Fn {
        static final MethodHandle H = capture("preadv2",
                FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT));
    }
    private static final class Pwritev2Fn {
        static final MethodHandle H = capture("pwritev2",
                FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT));
    }
    private static final class FdatasyncFn {
        static final MethodHandle H = capture("fdatasync", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    }
    private static final class FsyncFn {
        static final MethodHandle H = capture("fsync", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    }
    private static final class FallocateFn {
        static final MethodHandle H = capture("fallocate",
                FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG));
    }
    private static final class FtruncateFn {
        static final MethodHandle H = capture("ftruncate", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG));
    }
    private static final class LseekFn {
        static final MethodHandle H = capture("lseek", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT));
    }
    private static final class FstatFn {
        static final MethodHandle H = capture("fstat", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS));
    }
    private static final class IoctlFn {
        static final MethodHandle H = capture("ioctl",
                FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, ADDRESS), Linker.Option.firstVariadicArg(2));
    }
    private static final class FcntlFn {
        static final MethodHandle H = capture("fcntl",
                FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG), Linker.Option.firstVariadicArg(2));
    }
    private static final class MmapFn {
        static final MethodHandle H = capture("mmap",
                FunctionDescriptor.of(ADDRESS, ADDRESS, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG));
    }
    private static final class MunmapFn {
        static final MethodHandle H = capture("munmap", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
    }
    private static final class MemfdCreateFn {
        static final MethodHandle H = capture("memfd_create", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
    }
    private static final class EventfdFn {
        static final MethodHandle H = capture("eventfd", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    }
    private static final class DupFn {
        static final MethodHandle H = capture("dup", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    }
    private static final class UnlinkFn {
        static final MethodHandle H = capture("unlink", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    }
    private static final class ChmodFn {
        static final MethodHandle H = capture("chmod", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
    }
    private static final class ChownFn {
        static final MethodHandle H = capture("chown", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
    }
    private static final class MlockallFn {
        static final MethodHandle H = capture("mlockall", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    }
    private static final class Syscall6Fn {
        static final MethodHandle H = capture("syscall",
                FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG),
                Linker.Option.firstVariadicArg(1));
    }
    private static final class GetpidFn {
        static final MethodHandle H = LINKER.downcallHandle(
                LIBC.find("getpid").orElseThrow(), FunctionDescriptor.of(JAVA_INT));
    }
    private static final class StrerrorFn {
        static final MethodHandle H = LINKER.downcallHandle(
                LIBC.find("strerror").orElseThrow(), FunctionDescriptor.of(ADDRESS, JAVA_INT));
    }

    private Libc() {
    }

    static MethodHandle capture(String name, FunctionDescriptor fd, Linker.Option... extra) {
        Linker.Option[] opts = new Linker.Option[extra.length + 1];
        opts[0] = CAPTURE;
        System.arraycopy(extra, 0, opts, 1, extra.length);
        MemorySegment sym = LIBC.find(name).orElseThrow(() -> new UnsatisfiedLinkError("libc has no " + name));
        return LINKER.downcallHandle(sym, fd, opts);
    }

    /** The calling thread's errno capture segment; reused for every call on that thread. */
    static MemorySegment state() {
        return CALL_STATE.get();
    }

    static int errno(MemorySegment state) {
        return (int) ERRNO.get(state, 0L);
    }

    static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException re) {
            return re;
        }
        if (t instanceof Error e) {
            throw e;
        }
        return new IllegalStateException(t);
    }

    public static String strerror(int errno) {
        try {
            MemorySegment s = (MemorySegment) StrerrorFn.H.invokeExact(errno);
            return s.reinterpret(256).getString(0);
        } catch (Throwable t) {
            return "errno " + errno;
        }
    }

    public static int getpid() {
        try {
            return (int) GetpidFn.H.invokeExact();
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    // ------------------------------------------------------------------ files

    public static int open(String path, int flags, int mode) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = state();
            int fd = (int) OpenFn.H.invokeExact(st, a.allocateFrom(path), flags, mode);
            if (fd < 0) {
                throw new ErrnoException("open", errno(st), path);
            }
            return fd;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static void close(int fd) {
        if (fd < 0) {
            return;
        }
        try {
            MemorySegment st = state();
            int r = (int) CloseFn.H.invokeExact(st, fd);
            if (r < 0 && errno(st) != Errno.EINTR) {
                throw new ErrnoException("close", errno(st));
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** Closes without throwing; for clean-up paths. */
    public static void closeQuietly(int fd) {
        try {
            close(fd);
        } catch (RuntimeException ignored) {
            // nothing to do on a clean-up path
        }
    }

    /** read(2); returns bytes read or -errno. */
    public static long readRaw(int fd, MemorySegment buf, long len) {
        try {
            MemorySegment st = state();
            long r = (long) ReadFn.H.invokeExact(st, fd, buf, len);
            return r < 0 ? -errno(st) : r;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** write(2); returns bytes written or -errno. */
    public static long writeRaw(int fd, MemorySegment buf, long len) {
        try {
            MemorySegment st = state();
            long r = (long) WriteFn.H.invokeExact(st, fd, buf, len);
            return r < 0 ? -errno(st) : r;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** pread(2) of exactly {@code len} bytes unless EOF; returns bytes read. */
    public static long pread(int fd, MemorySegment buf, long len, long offset) {
        long done = 0;
        while (done < len) {
            long r;
            try {
                MemorySegment st = state();
                r = (long) PreadFn.H.invokeExact(st, fd, buf.asSlice(done), len - done, offset + done);
                if (r < 0) {
                    int e = errno(st);
                    if (e == Errno.EINTR) {
                        continue;
                    }
                    throw new ErrnoException("pread", e);
                }
            } catch (Throwable t) {
                throw rethrow(t);
            }
            if (r == 0) {
                break;
            }
            done += r;
        }
        return done;
    }

    /** pwrite(2) of exactly {@code len} bytes. */
    public static void pwrite(int fd, MemorySegment buf, long len, long offset) {
        long done = 0;
        while (done < len) {
            try {
                MemorySegment st = state();
                long r = (long) PwriteFn.H.invokeExact(st, fd, buf.asSlice(done), len - done, offset + done);
                if (r < 0) {
                    int e = errno(st);
                    if (e == Errno.EINTR) {
                        continue;
                    }
                    throw new ErrnoException("pwrite", e);
                }
                done += r;
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }
    }

    /** preadv2(2): returns bytes or -errno. {@code iov} holds {@code iovcnt} struct iovec. */
    public static long preadv2Raw(int fd, long iov, int iovcnt, long offset, int flags) {
        try {
            MemorySegment st = state();
            long r = (long) Preadv2Fn.H.invokeExact(st, fd, iov, iovcnt, offset, flags);
            return r < 0 ? -errno(st) : r;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** pwritev2(2): returns bytes or -errno. */
    public static long pwritev2Raw(int fd, long iov, int iovcnt, long offset, int flags) {
        try {
            MemorySegment st = state();
            long r = (long) Pwritev2Fn.H.invokeExact(st, fd, iov, iovcnt, offset, flags);
            return r < 0 ? -errno(st) : r;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** fdatasync(2); returns 0 or -errno. */
    public static int fdatasyncRaw(int fd) {
        try {
            MemorySegment st = state();
            int r = (int) FdatasyncFn.H.invokeExact(st, fd);
            return r < 0 ? -errno(st) : 0;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static void fsync(int fd) {
        try {
            MemorySegment st = state();
            int r = (int) FsyncFn.H.invokeExact(st, fd);
            if (r < 0) {
                throw new ErrnoException("fsync", errno(st));
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** fallocate(2); returns 0 or -errno. */
    public static int fallocateRaw(int fd, int mode, long offset, long len) {
        try {
            MemorySegment st = state();
            int r = (int) FallocateFn.H.invokeExact(st, fd, mode, offset, len);
            return r < 0 ? -errno(st) : 0;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static void ftruncate(int fd, long size) {
        try {
            MemorySegment st = state();
            int r = (int) FtruncateFn.H.invokeExact(st, fd, size);
            if (r < 0) {
                throw new ErrnoException("ftruncate", errno(st));
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** lseek(2); returns the offset or -errno (SEEK_DATA/SEEK_HOLE answer -ENXIO past the data). */
    public static long lseekRaw(int fd, long offset, int whence) {
        try {
            MemorySegment st = state();
            long r = (long) LseekFn.H.invokeExact(st, fd, offset, whence);
            return r < 0 ? -errno(st) : r;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** The fields of struct stat (x86_64) that vhostblk uses. */
    public record Stat(long dev, long ino, int mode, int uid, int gid, long rdev, long size, long blksize, long blocks) {
        public boolean isRegularFile() {
            return (mode & S_IFMT) == S_IFREG;
        }

        public boolean isBlockDevice() {
            return (mode & S_IFMT) == S_IFBLK;
        }
    }

    public static Stat fstat(int fd) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(144, 8);
            MemorySegment st = state();
            int r = (int) FstatFn.H.invokeExact(st, fd, buf);
            if (r < 0) {
                throw new ErrnoException("fstat", errno(st));
            }
            return new Stat(buf.get(JAVA_LONG, 0), buf.get(JAVA_LONG, 8), buf.get(JAVA_INT, 24),
                    buf.get(JAVA_INT, 28), buf.get(JAVA_INT, 32), buf.get(JAVA_LONG, 40), buf.get(JAVA_LONG, 48),
                    buf.get(JAVA_LONG, 56), buf.get(JAVA_LONG, 64));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** ioctl(2) with a pointer argument; returns the result or -errno. */
    public static int ioctlRaw(int fd, long request, MemorySegment arg) {
        try {
            MemorySegment st = state();
            int r = (int) IoctlFn.H.invokeExact(st, fd, request, arg);
            return r < 0 ? -errno(st) : r;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static int fcntl(int fd, int cmd, long arg) {
        try {
            MemorySegment st = state();
            int r = (int) FcntlFn.H.invokeExact(st, fd, cmd, arg);
            if (r < 0) {
                throw new ErrnoException("fcntl", errno(st));
            }
            return r;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static int dup(int fd) {
        try {
            MemorySegment st = state();
            int r = (int) DupFn.H.invokeExact(st, fd);
            if (r < 0) {
                throw new ErrnoException("dup", errno(st));
            }
            return r;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static void unlinkIfExists(String path) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = state();
            int r = (int) UnlinkFn.H.invokeExact(st, a.allocateFrom(path));
            if (r < 0 && errno(st) != Errno.ENOENT) {
                throw new ErrnoException("unlink", errno(st), path);
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static void chmod(String path, int mode) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = state();
            int r = (int) ChmodFn.H.invokeExact(st, a.allocateFrom(path), mode);
            if (r < 0) {
                throw new ErrnoException("chmod", errno(st), path);
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static void chown(String path, int uid, int gid) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = state();
            int r = (int) ChownFn.H.invokeExact(st, a.allocateFrom(path), uid, gid);
            if (r < 0) {
                throw new ErrnoException("chown", errno(st), path);
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static void mlockall(int flags) {
        try {
            MemorySegment st = state();
            int r = (int) MlockallFn.H.invokeExact(st, flags);
            if (r < 0) {
                throw new ErrnoException("mlockall", errno(st));
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    // ------------------------------------------------------------------ memory

    /** mmap(2); the returned segment has the mapping's length and must be released with {@link #munmap}. */
    public static MemorySegment mmap(long len, int prot, int flags, int fd, long offset) {
        try {
            MemorySegment st = state();
            MemorySegment p = (MemorySegment) MmapFn.H.invokeExact(st, MemorySegment.NULL, len, prot, flags, fd, offset);
            if (p.address() == -1L) {
                throw new ErrnoException("mmap", errno(st), "of " + len + " bytes at offset " + offset);
            }
            return p.reinterpret(len);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static void munmap(MemorySegment mapping) {
        try {
            MemorySegment st = state();
            int r = (int) MunmapFn.H.invokeExact(st, mapping, mapping.byteSize());
            if (r < 0) {
                throw new ErrnoException("munmap", errno(st));
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static final int MFD_CLOEXEC = 1;
    public static final int MFD_ALLOW_SEALING = 2;

    public static int memfdCreate(String name, int flags) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = state();
            int fd = (int) MemfdCreateFn.H.invokeExact(st, a.allocateFrom(name), flags);
            if (fd < 0) {
                throw new ErrnoException("memfd_create", errno(st));
            }
            return fd;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    // ------------------------------------------------------------------ eventfd

    public static final int EFD_NONBLOCK = 0x800;
    public static final int EFD_CLOEXEC = 0x80000;

    public static int eventfd(int initval, int flags) {
        try {
            MemorySegment st = state();
            int fd = (int) EventfdFn.H.invokeExact(st, initval, flags);
            if (fd < 0) {
                throw new ErrnoException("eventfd", errno(st));
            }
            return fd;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    // ------------------------------------------------------------------ raw syscalls

    public static final long SYS_IO_URING_SETUP = 425;
    public static final long SYS_IO_URING_ENTER = 426;
    public static final long SYS_IO_URING_REGISTER = 427;

    /** syscall(2) with up to six arguments; returns the result or -errno. */
    public static long syscallRaw(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
        try {
            MemorySegment st = state();
            long r = (long) Syscall6Fn.H.invokeExact(st, nr, a1, a2, a3, a4, a5, a6);
            return r < 0 ? -errno(st) : r;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** A little-endian unsigned 64-bit counter as eventfd reads and writes it. */
    public static final ValueLayout.OfLong U64 = JAVA_LONG;
}
