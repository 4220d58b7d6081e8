package io.vhostblk.server;

import io.vhostblk.blk.BlkQueue;
import io.vhostblk.linux.Libc;

/**
 * The control thread's view of one vring: what the frontend configured (size, addresses, base,
 * fds) and its two states of the vhost-user spec, started/stopped and enabled/disabled. While
 * started, {@link #queue} is the runtime a worker serves.
 */
final class Vring {
    final int index;
    int num;
    long descUser;
    long usedUser;
    long availUser;
    int addrFlags;
    boolean addrSet;
    int base;
    int kickFd = -1;
    int callFd = -1;
    int errFd = -1;
    boolean started;
    volatile boolean enabled;
    BlkQueue queue;
    Worker worker;

    Vring(int index) {
        this.index = index;
    }

    void closeFds() {
        Libc.closeQuietly(kickFd);
        Libc.closeQuietly(callFd);
        Libc.closeQuietly(errFd);
        kickFd = -1;
        callFd = -1;
        errFd = -1;
    }

    /** Back to the state of a fresh connection. */
    void reset() {
        closeFds();
        num = 0;
        descUser = usedUser = availUser = 0;
        addrFlags = 0;
        addrSet = false;
        base = 0;
        started = false;
        enabled = false;
        queue = null;
    }
}
