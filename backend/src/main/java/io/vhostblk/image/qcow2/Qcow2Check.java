package io.vhostblk.image.qcow2;

/** Consistency check and refcount repair. */
final class Qcow2Check {
    private Qcow2Check() {
    }

    static void repair(Qcow2Image img) {
        throw new Qcow2Exception(img.path + ": the image is dirty; repair it with qemu-img check -r all");
    }
}
