package io.vhostblk.frontend;

import io.vhostblk.vhostuser.Request;

/** The backend answered a NEED_REPLY message (REPLY_ACK) with a non-zero status. */
public final class NackException extends RuntimeException {
    private final int request;
    private final long status;

    public NackException(int request, long status) {
        super("backend rejected " + Request.name(request) + " (REPLY_ACK status " + status + ")");
        this.request = request;
        this.status = status;
    }

    public int request() {
        return request;
    }

    public long status() {
        return status;
    }
}
