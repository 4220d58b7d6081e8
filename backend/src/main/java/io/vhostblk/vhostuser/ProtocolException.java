package io.vhostblk.vhostuser;

/** A message that breaks the vhost-user protocol: wrong size, missing fd, bad index, bad state. */
public final class ProtocolException extends RuntimeException {
    public ProtocolException(String message) {
        super(message);
    }
}
