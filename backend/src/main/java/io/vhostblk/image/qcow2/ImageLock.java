package io.vhostblk.image.qcow2;

import io.vhostblk.linux.Errno;
import io.vhostblk.linux.ErrnoException;
import io.vhostblk.linux.Libc;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

/**
 * Image locking as QEMU's file-posix driver does it: one-byte OFD read locks at offset
 * {@code 100 + perm} for each permission held and at {@code 200 + perm} for each permission the
 * holder does not share with others. Permissions are QEMU's: 0 consistent read, 1 write,
 * 2 write unchanged, 3 resize. A writer holds {0, 1, 3} and does not share {1, 3}; a reader holds
 * {0} and does not share {1, 3} — exactly what qemu-io and qemu-img take, so each side refuses
 * what the other would refuse.
 */
final class ImageLock {
    static final int F_OFD_GETLK = 36;
    static final int F_OFD_SETLK = 37;
    static final short F_RDLCK = 0;
    static final short F_WRLCK = 1;
    static final short F_UNLCK = 2;
    static final int PERM_BASE = 100;
    static final int SHARED_BASE = 200;
    static final String[] PERM_NAMES = {"consistent read", "write", "write unchanged", "resize"};

    private final int fd;
    private final int[] bytes;

    private ImageLock(int fd, int[] bytes) {
        this.fd = fd;
        this.bytes = bytes;
    }

    static ImageLock acquire(int fd, String path, boolean readOnly) {
        int[] perms = readOnly ? new int[]{0} : new int[]{0, 1, 3};
        int[] unshared = {1, 3};
        List<Integer> taken = new ArrayList<>();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment fl = a.allocate(32, 8);
            for (int p : perms) {
                lock(fd, fl, F_RDLCK, PERM_BASE + p, path);
                taken.add(PERM_BASE + p);
            }
            for (int p : unshared) {
                lock(fd, fl, F_RDLCK, SHARED_BASE + p, path);
                taken.add(SHARED_BASE + p);
            }
            for (int p : perms) {
                if (conflicts(fd, fl, SHARED_BASE + p)) {
                    throw refused(path, "Failed to get \"" + PERM_NAMES[p] + "\" lock: another process does not share the "
                            + PERM_NAMES[p] + " permission");
                }
            }
            for (int p : unshared) {
                if (conflicts(fd, fl, PERM_BASE + p)) {
                    throw refused(path, "Failed to get shared \"" + PERM_NAMES[p] + "\" lock: another process holds the "
                            + PERM_NAMES[p] + " permission");
                }
            }
        } catch (RuntimeException e) {
            release(fd, taken);
            throw e;
        }
        return new ImageLock(fd, taken.stream().mapToInt(Integer::intValue).toArray());
    }

    private static void lock(int fd, MemorySegment fl, short type, int off, String path) {
        set(fl, type, off);
        try {
            Libc.fcntl(fd, F_OFD_SETLK, fl.address());
        } catch (ErrnoException e) {
            if (e.errno() == Errno.EAGAIN || e.errno() == Errno.EACCES) {
                throw refused(path, "Failed to lock byte " + off);
            }
            throw new Qcow2Exception(path + ": OFD lock: " + e.getMessage(), e);
        }
    }

    private static boolean conflicts(int fd, MemorySegment fl, int off) {
        set(fl, F_WRLCK, off);
        Libc.fcntl(fd, F_OFD_GETLK, fl.address());
        return fl.get(JAVA_SHORT, 0) != F_UNLCK;
    }

    private static void set(MemorySegment fl, short type, long off) {
        fl.fill((byte) 0);
        fl.set(JAVA_SHORT, 0, type);
        fl.set(JAVA_SHORT, 2, (short) 0); // SEEK_SET
        fl.set(JAVA_LONG, 8, off);
        fl.set(JAVA_LONG, 16, 1L);
        fl.set(JAVA_INT, 24, 0);
    }

    private static void release(int fd, List<Integer> offs) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment fl = a.allocate(32, 8);
            for (int off : offs) {
                set(fl, F_UNLCK, off);
                try {
                    Libc.fcntl(fd, F_OFD_SETLK, fl.address());
                } catch (RuntimeException ignored) {
                    // closing the fd drops it anyway
                }
            }
        }
    }

    void release() {
        List<Integer> l = new ArrayList<>();
        for (int b : bytes) {
            l.add(b);
        }
        release(fd, l);
    }

    private static Qcow2Exception refused(String path, String what) {
        return new Qcow2Exception(path + " is in use: " + what + " (held by " + holders(path)
                + "). Is another process using the image?");
    }

    /** The processes that have {@code path} open, as "pid N (command line)". */
    static String holders(String path) {
        List<String> out = new ArrayList<>();
        Path target;
        try {
            target = Path.of(path).toRealPath();
        } catch (IOException e) {
            return "an unknown process";
        }
        int self = Libc.getpid();
        try (DirectoryStream<Path> procs = Files.newDirectoryStream(Path.of("/proc"), p -> p.getFileName().toString().matches("\\d+"))) {
            for (Path proc : procs) {
                int pid = Integer.parseInt(proc.getFileName().toString());
                if (pid == self) {
                    continue;
                }
                try (DirectoryStream<Path> fds = Files.newDirectoryStream(proc.resolve("fd"))) {
                    for (Path f : fds) {
                        Path link;
                        try {
                            link = Files.readSymbolicLink(f);
                        } catch (IOException e) {
                            continue;
                        }
                        if (link.equals(target)) {
                            String cmd;
                            try {
                                cmd = new String(Files.readAllBytes(proc.resolve("cmdline")), StandardCharsets.UTF_8)
                                        .replace('\0', ' ').trim();
                            } catch (IOException e) {
                                cmd = "?";
                            }
                            out.add("pid " + pid + ": " + cmd);
                            break;
                        }
                    }
                } catch (IOException | SecurityException e) {
                    // process gone or not ours to look at
                }
            }
        } catch (IOException e) {
            return "an unknown process";
        }
        return out.isEmpty() ? "another open file description, perhaps in this process" : String.join("; ", out);
    }
}
