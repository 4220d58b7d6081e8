package io.vhostblk.server;

import io.vhostblk.image.CacheMode;

/** The conformance suite on the portable thread engine through the page cache (--engine threads --cache writeback). */
class ThreadsWritebackConformanceTest extends BackendConformanceTest {
    @Override
    String engine() {
        return "threads";
    }

    @Override
    CacheMode cache() {
        return CacheMode.WRITEBACK;
    }
}
