package io.vhostblk.server;

import io.vhostblk.image.CacheMode;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The conformance suite on a qcow2 overlay of a raw backing file, served by the native qcow2
 * library. What the guest wrote is read back through QEMU's own qcow2 driver
 * ({@code qemu-img convert}), and after every test {@code qemu-img check} must find the image
 * clean.
 */
class Qcow2ConformanceTest extends BackendConformanceTest {
    @BeforeAll
    static void needQemuImg() {
        assumeTrue(Files.isExecutable(Path.of("/usr/bin/qemu-img")), "qemu-img is the qcow2 oracle; install qemu-utils");
    }

    @Override
    String engine() {
        return "io_uring";
    }

    @Override
    CacheMode cache() {
        return CacheMode.NONE;
    }

    @Override
    InProcessBackend.Kind imageKind() {
        return InProcessBackend.Kind.QCOW2;
    }

    @AfterEach
    @Override
    void stop() throws InterruptedException {
        super.stop();
        if (backend != null) {
            try {
                String out = InProcessBackend.run("qemu-img", "check", backend.image.toString());
                assertTrue(out.contains("No errors were found"), out);
            } catch (java.io.IOException e) {
                throw new AssertionError("qemu-img check of " + backend.image + ": " + e.getMessage());
            }
        }
    }
}
