package io.vhostblk.server;

import io.vhostblk.blk.BlkDevice;
import io.vhostblk.blk.BlkRequest;
import io.vhostblk.frontend.BlkClient;
import io.vhostblk.frontend.VhostUserFrontend;
import io.vhostblk.image.CacheMode;
import io.vhostblk.image.RawImage;
import io.vhostblk.linux.Libc;
import io.vhostblk.linux.UnixSocket;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.RandomAccessFile;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

/** {@code --fd N}: the backend serves one already connected socket and returns when it closes. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class FdModeTest {
    @TempDir
    Path dir;

    @Test
    void servesTheInheritedConnectionThenReturns() throws Exception {
        Path img = dir.resolve("d.raw");
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
            f.setLength(16 << 20);
        }
        String path = dir.resolve("l.sock").toString();
        int listen = UnixSocket.listen(path, 1);
        VhostUserFrontend fe = VhostUserFrontend.connect(path, 5000);
        UnixSocket accepted = UnixSocket.accept(listen);
        Libc.close(listen);
        Libc.unlinkIfExists(path);

        BackendConfig cfg = new BackendConfig(null, accepted.fd(), img.toString(), "raw", false, 1, 1, 1024, null,
                "io_uring", CacheMode.WRITEBACK, 0, 4, false, null, 4L << 20, 1L << 20);
        RawImage raw = RawImage.open(img.toString(), false, CacheMode.WRITEBACK);
        BackendServer server = new BackendServer(cfg, new BlkDevice(raw, 1, null));
        Thread t = Thread.ofPlatform().start(server::run);
        try (BlkClient c = BlkClient.open(fe, BlkClient.Options.defaults())) {
            long buf = c.memory().allocate(4096, 4096);
            assertEquals(BlkRequest.S_OK, c.driver(0).write(0, buf, 4096));
            assertEquals(BlkRequest.S_OK, c.driver(0).flush());
        }
        t.join(TimeUnit.SECONDS.toMillis(20));
        assertFalse(t.isAlive(), "with --fd the server returns once its one connection ends");
        assertEquals(1, server.connections());
        server.close();
        raw.close();
    }
}
