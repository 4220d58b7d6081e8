package io.vhostblk.it;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/**
 * QEMU's own vhost-user-blk server (qemu-storage-daemon) exporting a raw file, writable,
 * with O_DIRECT + native AIO and discard passed down to the file (holes are punched).
 * The reference backend that proves the rig.
 */
public final class QsdBackend extends AbstractBackendProcess {
    private final Path file;
    private final int numQueues;

    public QsdBackend(Path socket, Path file, int numQueues, Path log) {
        super(socket, log, Duration.ofSeconds(30));
        this.file = file;
        this.numQueues = numQueues;
    }

    @Override
    protected List<String> command() {
        return List.of("qemu-storage-daemon",
                "--blockdev", "driver=file,node-name=f0,filename=" + QemuGuest.escape(file.toString())
                        + ",cache.direct=on,aio=native,discard=unmap",
                "--export", "type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path="
                        + QemuGuest.escape(socket.toString()) + ",writable=on,num-queues=" + numQueues);
    }
}
