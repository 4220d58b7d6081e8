package io.vhostblk.fuzz;

import java.io.ByteArrayOutputStream;
import java.util.Arrays;

/**
 * A little-endian cursor over a fuzzer input. Reading past the end yields zeroes (never throws),
 * so every byte string is a valid input: the fuzz targets define their formats on top of it and
 * the seed builders write the same formats with {@link Writer}.
 */
final class FuzzInput {
    private final byte[] data;
    private int pos;

    FuzzInput(byte[] data) {
        this.data = data;
    }

    boolean hasMore() {
        return pos < data.length;
    }

    int remaining() {
        return Math.max(0, data.length - pos);
    }

    int u8() {
        return pos < data.length ? data[pos++] & 0xFF : 0;
    }

    int u16() {
        return u8() | u8() << 8;
    }

    int u32() {
        return u16() | u16() << 16;
    }

    long u64() {
        return (u32() & 0xFFFF_FFFFL) | (long) u32() << 32;
    }

    /** The next {@code n} bytes (fewer if the input ends first). */
    byte[] bytes(int n) {
        int k = Math.min(Math.max(n, 0), remaining());
        byte[] b = Arrays.copyOfRange(data, pos, pos + k);
        pos += k;
        return b;
    }

    /** Everything not read yet. */
    byte[] rest() {
        return bytes(remaining());
    }

    /** Builds inputs in the same encoding (seed corpora). */
    static final class Writer {
        private final ByteArrayOutputStream out = new ByteArrayOutputStream();

        Writer u8(int v) {
            out.write(v);
            return this;
        }

        Writer u16(int v) {
            return u8(v).u8(v >>> 8);
        }

        Writer u32(int v) {
            return u16(v).u16(v >>> 16);
        }

        Writer u64(long v) {
            return u32((int) v).u32((int) (v >>> 32));
        }

        Writer bytes(byte[] b) {
            out.writeBytes(b);
            return this;
        }

        int size() {
            return out.size();
        }

        byte[] toByteArray() {
            return out.toByteArray();
        }
    }
}
