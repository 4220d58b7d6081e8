package io.vhostblk.image.qcow2;

/** An image that cannot be opened or used as asked, with an operator-readable message. */
public class Qcow2Exception extends RuntimeException {
    public Qcow2Exception(String message) {
        super(message);
    }

    public Qcow2Exception(String message, Throwable cause) {
        super(message, cause);
    }
}
