package io.vhostblk.server;

import io.vhostblk.image.CacheMode;

/** The conformance suite on the io_uring engine with O_DIRECT (--engine io_uring --cache none). */
class IoUringDirectConformanceTest extends BackendConformanceTest {
    @Override
    String engine() {
        return "io_uring";
    }

    @Override
    CacheMode cache() {
        return CacheMode.NONE;
    }
}
