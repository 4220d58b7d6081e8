package io.vhostblk.frontend;

/**
 * The device side broke the virtqueue contract as seen from the driver: a used id that names no
 * chain in flight, a used index that ran ahead by more than the queue size, and the like.
 */
public final class RingException extends RuntimeException {
    public RingException(String message) {
        super(message);
    }
}
