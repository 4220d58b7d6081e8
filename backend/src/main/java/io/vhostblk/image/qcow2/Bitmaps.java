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

    /** A bitmap as info shows it. */
    record Info(String name, long granularity, int flags) {
        java.util.List<String> flagNames() {
            java.util.List<String> l = new java.util.ArrayList<>();
            if ((flags & 1) != 0) {
                l.add("in-use");
            }
            if ((flags & 2) != 0) {
                l.add("auto");
            }
            return l;
        }
    }

    java.util.List<Info> list() {
        return java.util.List.of();
    }
}
