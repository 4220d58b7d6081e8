package io.vhostblk.it;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * What a guest run printed on its serial console: {@code VHOSTBLK-RESULT key=value} lines
 * and the final {@code VHOSTBLK-DONE rc=N}.
 */
public final class GuestResult {
    private static final Pattern RESULT = Pattern.compile("VHOSTBLK-RESULT ([A-Za-z0-9_.-]+)=(.*)$");
    private static final Pattern DONE = Pattern.compile("VHOSTBLK-DONE rc=(-?\\d+)");

    private final List<String> lines;
    private final List<Map.Entry<String, String>> entries;
    private final Map<String, String> values;
    private final List<Integer> doneRcs;
    private final int qemuExitCode;
    private final Path log;
    private final Duration elapsed;

    GuestResult(List<String> lines, int qemuExitCode, Path log, Duration elapsed) {
        this.lines = List.copyOf(lines);
        this.qemuExitCode = qemuExitCode;
        this.log = log;
        this.elapsed = elapsed;
        List<Map.Entry<String, String>> es = new ArrayList<>();
        Map<String, String> vs = new LinkedHashMap<>();
        List<Integer> dones = new ArrayList<>();
        for (String line : this.lines) {
            Matcher m = RESULT.matcher(line);
            if (m.find()) {
                String v = m.group(2).strip();
                es.add(Map.entry(m.group(1), v));
                vs.put(m.group(1), v);
                continue;
            }
            Matcher d = DONE.matcher(line);
            if (d.find()) {
                dones.add(Integer.parseInt(d.group(1)));
            }
        }
        this.entries = Collections.unmodifiableList(es);
        this.values = Collections.unmodifiableMap(vs);
        this.doneRcs = List.copyOf(dones);
    }

    /** Parses a console log file written by {@link QemuGuest}. */
    public static GuestResult parse(Path log, int qemuExitCode, Duration elapsed) {
        try {
            String text = new String(Files.readAllBytes(log), StandardCharsets.UTF_8);
            return parse(text, qemuExitCode, log, elapsed);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    public static GuestResult parse(String consoleText, int qemuExitCode, Path log, Duration elapsed) {
        List<String> ls = new ArrayList<>();
        for (String l : consoleText.split("\n", -1)) {
            ls.add(l.replace("\r", ""));
        }
        return new GuestResult(ls, qemuExitCode, log, elapsed);
    }

    /** Last value printed for each key. */
    public Map<String, String> values() {
        return values;
    }

    /** Every RESULT line in order (keys may repeat, e.g. across a reboot). */
    public List<Map.Entry<String, String>> entries() {
        return entries;
    }

    public List<String> lines() {
        return lines;
    }

    public boolean has(String key) {
        return values.containsKey(key);
    }

    public String get(String key) {
        String v = values.get(key);
        if (v == null) {
            throw new AssertionError("guest printed no VHOSTBLK-RESULT " + key + "=...\n" + describe());
        }
        return v;
    }

    public long getLong(String key) {
        String v = get(key);
        try {
            return Long.parseLong(v);
        } catch (NumberFormatException e) {
            throw new AssertionError("VHOSTBLK-RESULT " + key + "=" + v + " is not a number\n" + describe());
        }
    }

    /** The rc of the DONE line if exactly one was printed. */
    public OptionalInt doneRc() {
        return doneRcs.size() == 1 ? OptionalInt.of(doneRcs.getFirst()) : OptionalInt.empty();
    }

    public int doneCount() {
        return doneRcs.size();
    }

    public int qemuExitCode() {
        return qemuExitCode;
    }

    public Path log() {
        return log;
    }

    public Duration elapsed() {
        return elapsed;
    }

    /** Exactly one {@code VHOSTBLK-DONE rc=0} and QEMU exited 0. */
    public boolean succeeded() {
        return doneRc().isPresent() && doneRc().getAsInt() == 0 && qemuExitCode == 0;
    }

    public GuestResult assertSuccess() {
        if (!succeeded()) {
            throw new AssertionError("guest test failed: DONE lines " + doneRcs + ", QEMU exit " + qemuExitCode
                    + "\n" + describe());
        }
        return this;
    }

    public String tail(int n) {
        int from = Math.max(0, lines.size() - n);
        return String.join("\n", lines.subList(from, lines.size()));
    }

    public String describe() {
        return "console log " + log + " (last lines):\n" + tail(40);
    }

    @Override
    public String toString() {
        return "GuestResult{done=" + doneRcs + ", qemuExit=" + qemuExitCode + ", elapsed=" + elapsed.toMillis()
                + "ms, values=" + values + "}";
    }
}
