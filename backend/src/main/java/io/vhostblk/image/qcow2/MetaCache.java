package io.vhostblk.image.qcow2;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;

/**
 * An LRU cache of metadata clusters (L2 tables or refcount blocks) keyed by host offset. Guarded
 * by the image's metadata lock. Dirty or pinned (being written) tables are never evicted: when
 * only those remain, the cache goes over its limit and {@link #overLimit()} asks the image for a
 * metadata flush.
 */
final class MetaCache {
    static final class Table {
        final long off;
        long[] l2;
        byte[] rb;
        boolean dirty;
        int pins;

        Table(long off) {
            this.off = off;
        }
    }

    private final LinkedHashMap<Long, Table> map = new LinkedHashMap<>(64, 0.75f, true);
    private final int max;

    MetaCache(long bytes, int tableBytes) {
        this.max = (int) Math.max(2, Math.min(1 << 20, bytes / tableBytes));
    }

    Table get(long off) {
        return map.get(off);
    }

    void put(Table t) {
        map.put(t.off, t);
        evict();
    }

    void remove(long off) {
        map.remove(off);
    }

    private void evict() {
        if (map.size() <= max) {
            return;
        }
        Iterator<Table> it = map.values().iterator();
        while (map.size() > max && it.hasNext()) {
            Table t = it.next();
            if (!t.dirty && t.pins == 0) {
                it.remove();
            }
        }
    }

    boolean overLimit() {
        return map.size() > max;
    }

    void trim() {
        evict();
    }

    List<Table> dirty() {
        List<Table> out = new ArrayList<>();
        for (Table t : map.values()) {
            if (t.dirty) {
                out.add(t);
            }
        }
        return out;
    }

    int capacity() {
        return max;
    }
}
