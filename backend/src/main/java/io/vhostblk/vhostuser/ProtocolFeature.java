package io.vhostblk.vhostuser;

/** vhost-user protocol feature bits (GET/SET_PROTOCOL_FEATURES). */
public final class ProtocolFeature {
    public static final int MQ = 0;
    public static final int LOG_SHMFD = 1;
    public static final int REPLY_ACK = 3;
    public static final int BACKEND_REQ = 5;
    public static final int CONFIG = 9;
    public static final int INFLIGHT_SHMFD = 12;
    public static final int RESET_DEVICE = 13;
    public static final int CONFIGURE_MEM_SLOTS = 15;
    public static final int STATUS = 16;

    /** Virtio feature bit 30: the frontend may use GET/SET_PROTOCOL_FEATURES. */
    public static final int VHOST_USER_F_PROTOCOL_FEATURES = 30;
    /** Virtio feature bit 26: dirty logging (live migration). */
    public static final int VHOST_F_LOG_ALL = 26;

    private ProtocolFeature() {
    }

    public static long bit(int b) {
        return 1L << b;
    }
}
