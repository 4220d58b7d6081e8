package io.vhostblk.plugin.xml;

/** A domain XML that cannot be rewritten as asked; the message is meant for the operator. */
public class RewriteException extends RuntimeException {
    public RewriteException(String message) {
        super(message);
    }

    public RewriteException(String message, Throwable cause) {
        super(message, cause);
    }
}
