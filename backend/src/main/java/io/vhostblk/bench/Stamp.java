package io.vhostblk.bench;

import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The --verify pattern: every 512-byte sector starts with its sector number and the run's
 * generation (two le64), and the remaining 62 words are a function of both, so a sector that
 * landed at the wrong offset, is stale from an earlier run or is torn is caught.
 */
final class Stamp {
    static final int SECTOR = 512;
    private static final int WORDS = SECTOR / 8;

    private Stamp() {
    }

    static long word(long sector, long generation, int i) {
        return switch (i) {
            case 0 -> sector;
            case 1 -> generation;
            default -> (sector * 0x9E3779B97F4A7C15L) ^ generation ^ (i * 0xBF58476D1CE4E5B9L);
        };
    }

    /** Stamps {@code len} bytes (whole sectors) of {@code buf} as sectors {@code firstSector}... */
    static void fill(MemorySegment buf, int len, long firstSector, long generation) {
        for (int s = 0; s < len / SECTOR; s++) {
            long sector = firstSector + s;
            long base = (long) s * SECTOR;
            for (int i = 0; i < WORDS; i++) {
                buf.set(JAVA_LONG, base + 8L * i, word(sector, generation, i));
            }
        }
    }

    /** Index of the first sector of {@code buf} that does not carry its stamp, or -1. */
    static int firstBad(MemorySegment buf, int len, long firstSector, long generation, int fromSector) {
        for (int s = fromSector; s < len / SECTOR; s++) {
            long sector = firstSector + s;
            long base = (long) s * SECTOR;
            for (int i = 0; i < WORDS; i++) {
                if (buf.get(JAVA_LONG, base + 8L * i) != word(sector, generation, i)) {
                    return s;
                }
            }
        }
        return -1;
    }

    /** What a bad sector holds, for the report. */
    static String describe(MemorySegment buf, int sectorInBuf, long expectedSector, long generation) {
        long base = (long) sectorInBuf * SECTOR;
        long gotSector = buf.get(JAVA_LONG, base);
        long gotGen = buf.get(JAVA_LONG, base + 8);
        int badWords = 0;
        for (int i = 0; i < WORDS; i++) {
            if (buf.get(JAVA_LONG, base + 8L * i) != word(expectedSector, generation, i)) {
                badWords++;
            }
        }
        return "sector " + expectedSector + ": holds stamp (sector " + gotSector + ", generation 0x" + Long.toHexString(gotGen)
                + "), expected (sector " + expectedSector + ", generation 0x" + Long.toHexString(generation) + "); "
                + badWords + " of " + WORDS + " words differ";
    }
}
