package io.vhostblk.linux;

/**
 * A failed Linux call: the call's name and the errno it set.
 *
 * <p>Unchecked because it travels through code that cannot do anything but fail a request or a
 * connection; callers that can react (EAGAIN, EINTR, EINVAL on O_DIRECT) test {@link #errno()}.
 */
public final class ErrnoException extends RuntimeException {
    private final int errno;
    private final String call;

    public ErrnoException(String call, int errno) {
        super(call + ": " + Libc.strerror(errno) + " (errno " + errno + ")");
        this.call = call;
        this.errno = errno;
    }

    public ErrnoException(String call, int errno, String detail) {
        super(call + " " + detail + ": " + Libc.strerror(errno) + " (errno " + errno + ")");
        this.call = call;
        this.errno = errno;
    }

    public int errno() {
        return errno;
    }

    public String call() {
        return call;
    }
}
