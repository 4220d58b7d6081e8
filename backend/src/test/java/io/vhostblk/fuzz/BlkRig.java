package io.vhostblk.fuzz;

import io.vhostblk.blk.BlkDevice;
import io.vhostblk.blk.BlkQueue;
import io.vhostblk.blk.BlkRequestHandler;
import io.vhostblk.image.CacheMode;
import io.vhostblk.image.RawImage;
import io.vhostblk.io.IoEngine;
import io.vhostblk.io.IoUringEngine;
import io.vhostblk.io.ThreadsEngine;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A virtio-blk request handler with a real I/O engine over a temp raw image, as a worker runs it,
 * minus the worker: the fuzz target starts one chain and runs the engine until it completes.
 * One rig per (read-only, engine) combination lives for the whole JVM (setting up io_uring or
 * I/O threads per fuzzer execution would dominate its cost).
 */
final class BlkRig {
    /** 1 MiB image: 2048 sectors, so random sectors are mostly out of range but small ones hit. */
    static final long DISK = 1 << 20;
    static final String SERIAL = "vhostblk-fuzz";
    private static final long COMPLETION_TIMEOUT_NS = 10_000_000_000L;
    private static final BlkRig[] RIGS = new BlkRig[4];

    final RawImage image;
    final BlkDevice device;
    final IoEngine engine;
    final BlkQueue[] queues = new BlkQueue[1];
    final BlkRequestHandler handler;

    private BlkRig(boolean readOnly, boolean threads) {
        try {
            Path file = Files.createTempFile("vhostblk-fuzz-", ".raw");
            file.toFile().deleteOnExit();
            try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
                f.setLength(DISK);
            }
            image = RawImage.open(file.toString(), readOnly, CacheMode.WRITEBACK);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        device = new BlkDevice(image, 1, SERIAL);
        engine = threads ? new ThreadsEngine(64, 2, "fuzz") : new IoUringEngine(64);
        handler = new BlkRequestHandler(device, engine, queues);
    }

    static synchronized BlkRig get(boolean readOnly, boolean threads) {
        int i = (readOnly ? 2 : 0) + (threads ? 1 : 0);
        if (RIGS[i] == null) {
            RIGS[i] = new BlkRig(readOnly, threads);
        }
        return RIGS[i];
    }

    /**
     * Starts chain {@code head} of {@code q} and drives the engine until no request of {@code q}
     * is in flight. Throws AssertionError if that takes more than 10 s (a request that never
     * completes would hang a real worker's GET_VRING_BASE).
     */
    void runToCompletion(BlkQueue q, int head) {
        queues[0] = q;
        q.setLocalIndex(0);
        handler.start(q, head);
        engine.submit();
        long deadline = System.nanoTime() + COMPLETION_TIMEOUT_NS;
        while (q.inflight() > 0) {
            if (engine.reap(handler) == 0) {
                Thread.onSpinWait();
            }
            engine.submit();
            if (System.nanoTime() > deadline) {
                throw new AssertionError("FINDING: request of head " + head + " did not complete within 10 s");
            }
        }
    }
}
