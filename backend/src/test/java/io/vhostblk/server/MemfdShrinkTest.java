package io.vhostblk.server;

import io.vhostblk.blk.BlkRequest;
import io.vhostblk.frontend.BlkClient;
import io.vhostblk.frontend.DriverQueue;
import io.vhostblk.frontend.VhostUserFrontend;
import io.vhostblk.image.CacheMode;
import io.vhostblk.linux.Libc;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A hostile frontend shrinks the memfd behind guest memory after SET_MEM_TABLE, so the next
 * access to the ring faults (SIGBUS, which the JVM raises as InternalError). The session must
 * end, and the backend must go on serving the next frontend.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class MemfdShrinkTest {
    @TempDir
    Path dir;

    @Test
    void aShrunkMemfdEndsTheSessionNotTheBackend() throws Exception {
        try (InProcessBackend backend = InProcessBackend.start(dir, 16 << 20, "io_uring", CacheMode.WRITEBACK, 1, 1,
                false, null, 0)) {
            BlkClient c = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults());
            VhostUserFrontend fe = c.frontend();
            DriverQueue q = c.queue(0);
            int base = fe.stopQueue(q);
            // Take the pages away under the backend's mapping; this process never touches them again.
            Libc.ftruncate(c.memory().region(0).fd(), 0);
            fe.setVringNum(q.index(), q.size());
            fe.setVringBase(q.index(), base);
            fe.setVringAddr(q.index(), 0, q.descUserAddr(), q.usedUserAddr(), q.availUserAddr(), 0);
            try {
                fe.setVringKick(q.index(), q.kickFd()); // the backend reads the used ring here: SIGBUS
            } catch (RuntimeException expected) {
                // a nack or a closed connection, either is right
            }
            assertTrue(fe.peerClosed(10_000), "the backend ends a session whose memory faulted");
            assertTrue(backend.alive(), "backend still serving: " + backend.failure());
            try (BlkClient next = BlkClient.open(backend.socketPath(), BlkClient.Options.defaults())) {
                assertEquals(BlkRequest.S_OK, next.driver(0).flush(), "the next frontend is served");
            }
        }
    }
}
