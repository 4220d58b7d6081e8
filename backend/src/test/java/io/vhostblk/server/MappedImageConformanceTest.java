package io.vhostblk.server;

import io.vhostblk.image.CacheMode;

/**
 * The conformance suite on a {@link io.vhostblk.image.MappedImage} (guest offsets shifted by a
 * header), served through the image engine — the path qcow2 images take.
 */
class MappedImageConformanceTest extends BackendConformanceTest {
    @Override
    String engine() {
        return "io_uring";
    }

    @Override
    CacheMode cache() {
        return CacheMode.WRITEBACK;
    }

    @Override
    InProcessBackend.Kind imageKind() {
        return InProcessBackend.Kind.SHIFTED;
    }
}
