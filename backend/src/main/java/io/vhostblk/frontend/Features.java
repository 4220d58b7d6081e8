package io.vhostblk.frontend;

import io.vhostblk.blk.BlkFeature;
import io.vhostblk.vhostuser.ProtocolFeature;
import io.vhostblk.virtq.VirtioFeature;

import java.util.StringJoiner;

/** Names of virtio-blk / transport / vhost-user feature bits, for messages and reports. */
public final class Features {
    private static final String[] VIRTIO = new String[64];
    private static final String[] PROTOCOL = new String[64];

    static {
        VIRTIO[BlkFeature.SIZE_MAX] = "SIZE_MAX";
        VIRTIO[BlkFeature.SEG_MAX] = "SEG_MAX";
        VIRTIO[BlkFeature.GEOMETRY] = "GEOMETRY";
        VIRTIO[BlkFeature.RO] = "RO";
        VIRTIO[BlkFeature.BLK_SIZE] = "BLK_SIZE";
        VIRTIO[BlkFeature.FLUSH] = "FLUSH";
        VIRTIO[BlkFeature.TOPOLOGY] = "TOPOLOGY";
        VIRTIO[BlkFeature.CONFIG_WCE] = "CONFIG_WCE";
        VIRTIO[BlkFeature.MQ] = "MQ";
        VIRTIO[BlkFeature.DISCARD] = "DISCARD";
        VIRTIO[BlkFeature.WRITE_ZEROES] = "WRITE_ZEROES";
        VIRTIO[VirtioFeature.NOTIFY_ON_EMPTY] = "NOTIFY_ON_EMPTY";
        VIRTIO[ProtocolFeature.VHOST_F_LOG_ALL] = "LOG_ALL";
        VIRTIO[VirtioFeature.ANY_LAYOUT] = "ANY_LAYOUT";
        VIRTIO[VirtioFeature.RING_INDIRECT_DESC] = "RING_INDIRECT_DESC";
        VIRTIO[VirtioFeature.RING_EVENT_IDX] = "RING_EVENT_IDX";
        VIRTIO[ProtocolFeature.VHOST_USER_F_PROTOCOL_FEATURES] = "PROTOCOL_FEATURES";
        VIRTIO[VirtioFeature.VERSION_1] = "VERSION_1";
        VIRTIO[VirtioFeature.ACCESS_PLATFORM] = "ACCESS_PLATFORM";
        VIRTIO[VirtioFeature.RING_PACKED] = "RING_PACKED";
        VIRTIO[VirtioFeature.IN_ORDER] = "IN_ORDER";

        PROTOCOL[ProtocolFeature.MQ] = "MQ";
        PROTOCOL[ProtocolFeature.LOG_SHMFD] = "LOG_SHMFD";
        PROTOCOL[2] = "RARP";
        PROTOCOL[ProtocolFeature.REPLY_ACK] = "REPLY_ACK";
        PROTOCOL[4] = "MTU";
        PROTOCOL[ProtocolFeature.BACKEND_REQ] = "BACKEND_REQ";
        PROTOCOL[6] = "CROSS_ENDIAN";
        PROTOCOL[8] = "PAGEFAULT";
        PROTOCOL[ProtocolFeature.CONFIG] = "CONFIG";
        PROTOCOL[10] = "BACKEND_SEND_FD";
        PROTOCOL[11] = "HOST_NOTIFIER";
        PROTOCOL[ProtocolFeature.INFLIGHT_SHMFD] = "INFLIGHT_SHMFD";
        PROTOCOL[ProtocolFeature.RESET_DEVICE] = "RESET_DEVICE";
        PROTOCOL[14] = "INBAND_NOTIFICATIONS";
        PROTOCOL[ProtocolFeature.CONFIGURE_MEM_SLOTS] = "CONFIGURE_MEM_SLOTS";
        PROTOCOL[ProtocolFeature.STATUS] = "STATUS";
    }

    private Features() {
    }

    public static String virtio(long bits) {
        return names(bits, VIRTIO);
    }

    public static String protocol(long bits) {
        return names(bits, PROTOCOL);
    }

    private static String names(long bits, String[] table) {
        StringJoiner j = new StringJoiner(",");
        for (int b = 0; b < 64; b++) {
            if ((bits & (1L << b)) != 0) {
                j.add(table[b] != null ? table[b] : "bit" + b);
            }
        }
        return j.length() == 0 ? "none" : j.toString();
    }
}
