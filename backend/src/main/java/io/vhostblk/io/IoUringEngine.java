package io.vhostblk.io;

import io.vhostblk.linux.Errno;
import io.vhostblk.linux.EventFd;
import io.vhostblk.linux.IoUring;
import io.vhostblk.linux.Libc;

/**
 * io_uring engine: every operation is one SQE whose iovecs point at guest memory; a batch is
 * submitted with one io_uring_enter, completions are reaped from the CQ without a syscall.
 * The ring signals an eventfd on completion so the worker's epoll sees it.
 */
public final class IoUringEngine implements IoEngine {
    private final IoUring ring;
    private final int eventFd;

    /** @param entries at least the number of operations that can be in flight (sum of queue sizes) */
    public IoUringEngine(int entries) {
        int n = Integer.highestOneBit(Math.max(8, Math.min(entries, 4096)) * 2 - 1);
        this.ring = new IoUring(n);
        this.eventFd = EventFd.create();
        ring.registerEventFd(eventFd);
    }

    private boolean room() {
        if (ring.sqSpace() > 0) {
            return true;
        }
        submit();
        return ring.sqSpace() > 0;
    }

    @Override
    public boolean readv(int fd, long iovAddr, int iovcnt, long offset, long token) {
        return room() && ring.prepReadv(fd, iovAddr, iovcnt, offset, 0, token);
    }

    @Override
    public boolean writev(int fd, long iovAddr, int iovcnt, long offset, boolean dsync, long token) {
        return room() && ring.prepWritev(fd, iovAddr, iovcnt, offset, dsync ? Libc.RWF_DSYNC : 0, token);
    }

    @Override
    public boolean fdatasync(int fd, long token) {
        return room() && ring.prepFsync(fd, IoUring.FSYNC_DATASYNC, token);
    }

    @Override
    public boolean fallocate(int fd, int mode, long offset, long len, long token) {
        return room() && ring.prepFallocate(fd, mode, offset, len, token);
    }

    @Override
    public void submit() {
        while (ring.pending() > 0) {
            int r = ring.submit(0);
            if (r == -Errno.EINTR) {
                continue;
            }
            if (r == -Errno.EAGAIN || r == -Errno.EBUSY) {
                // Kernel short of resources or CQ full: let completions drain first.
                Thread.onSpinWait();
                return;
            }
            if (r < 0) {
                throw new io.vhostblk.linux.ErrnoException("io_uring_enter", -r);
            }
        }
    }

    @Override
    public int reap(IoUring.CompletionHandler handler) {
        return ring.reap(handler);
    }

    @Override
    public int completionFd() {
        return eventFd;
    }

    @Override
    public String name() {
        return "io_uring";
    }

    @Override
    public void close() {
        ring.close();
        Libc.closeQuietly(eventFd);
    }
}
