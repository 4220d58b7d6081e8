package io.vhostblk.image.qcow2;

/** Persistent dirty bitmaps (the "bitmaps" header extension). */
final class Bitmaps {
    private final Qcow2Image img;

    Bitmaps(Qcow2Image img) {
        this.img = img;
    }

    void loadForWriting() {
    }

    void markDirty(long off, long len) {
    }

    void storeOnClose() {
    }

    /** Where check counts references. */
    interface RefSink {
        void inc(long off, long len);
    }

    void addReferences(RefSink sink) {
    }
}
