package io.vhostblk.plugin.xml;

import java.util.LinkedHashSet;
import java.util.Set;

/**
 * What {@link DomainXmlRewriter#convert} should do.
 *
 * @param targets          disk targets (vda, vdb...) to convert; empty = every eligible disk
 * @param queues           virtqueues per disk (driver queues and backend --num-queues); null =
 *                         keep the disk's driver queues, else the domain's vCPU count (max 256)
 * @param workers          backend worker threads; null = backend default
 * @param pollUs           backend busy-poll microseconds; null = backend default
 * @param socketDir        directory of the vhost-user sockets (owned by vhostblk)
 * @param reconnectSeconds QEMU's reconnect interval when the backend goes away
 */
public record ConvertOptions(Set<String> targets, Integer queues, Integer workers, Integer pollUs,
                             String socketDir, int reconnectSeconds) {
    public static final String DEFAULT_SOCKET_DIR = "/run/vhostblk/sockets";

    public ConvertOptions {
        targets = Set.copyOf(new LinkedHashSet<>(targets == null ? Set.of() : targets));
        if (queues != null && (queues < 1 || queues > 256)) {
            throw new IllegalArgumentException("--queues must be 1..256, not " + queues);
        }
        if (workers != null && (workers < 1 || workers > 64)) {
            throw new IllegalArgumentException("--workers must be 1..64, not " + workers);
        }
        if (socketDir == null || socketDir.isBlank()) {
            socketDir = DEFAULT_SOCKET_DIR;
        }
        if (!socketDir.startsWith("/")) {
            throw new IllegalArgumentException("socket directory must be absolute: " + socketDir);
        }
        if (reconnectSeconds < 1) {
            throw new IllegalArgumentException("reconnect interval must be >= 1 s");
        }
    }

    public static ConvertOptions defaults() {
        return new ConvertOptions(Set.of(), null, null, null, DEFAULT_SOCKET_DIR, 1);
    }

    public ConvertOptions withTargets(Set<String> t) {
        return new ConvertOptions(t, queues, workers, pollUs, socketDir, reconnectSeconds);
    }

    public ConvertOptions withQueues(Integer q) {
        return new ConvertOptions(targets, q, workers, pollUs, socketDir, reconnectSeconds);
    }

    public ConvertOptions withWorkers(Integer w) {
        return new ConvertOptions(targets, queues, w, pollUs, socketDir, reconnectSeconds);
    }

    public ConvertOptions withSocketDir(String d) {
        return new ConvertOptions(targets, queues, workers, pollUs, d, reconnectSeconds);
    }
}
