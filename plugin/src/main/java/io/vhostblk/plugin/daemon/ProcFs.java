package io.vhostblk.plugin.daemon;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** Small /proc look-ups. */
public final class ProcFs {
    private ProcFs() {}

    /** The command line of {@code pid} with NULs as spaces, or null. */
    public static String cmdline(long pid) {
        try {
            byte[] b = Files.readAllBytes(Path.of("/proc", Long.toString(pid), "cmdline"));
            for (int i = 0; i < b.length; i++) {
                if (b[i] == 0) {
                    b[i] = ' ';
                }
            }
            return new String(b, StandardCharsets.UTF_8).trim();
        } catch (IOException e) {
            return null;
        }
    }

    /** Processes whose command line mentions {@code text} (and none of {@code excluding}). */
    public static List<Long> processesMentioning(String text, String excluding) {
        List<Long> out = new ArrayList<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(Path.of("/proc"), p -> p.getFileName().toString().matches("\\d+"))) {
            for (Path p : ds) {
                long pid = Long.parseLong(p.getFileName().toString());
                String c = cmdline(pid);
                if (c != null && c.contains(text) && (excluding == null || !c.contains(excluding))) {
                    out.add(pid);
                }
            }
        } catch (IOException e) {
            // /proc unreadable: nothing known
        }
        return out;
    }
}
