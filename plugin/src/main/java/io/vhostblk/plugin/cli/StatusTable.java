package io.vhostblk.plugin.cli;

import com.fasterxml.jackson.databind.JsonNode;

import java.util.ArrayList;
import java.util.List;

/** The {@code vhostblk status} table. Counters the backend does not report (yet) show as "-". */
final class StatusTable {
    static final String[] HEADER = {"DOMAIN", "TARGET", "IMAGE", "FORMAT", "SOCKET", "PID", "STATE", "QUEUES", "UPTIME",
            "RESTARTS", "CONN", "REQUESTS", "ERRORS"};

    private StatusTable() {}

    static String render(JsonNode backends) {
        List<String[]> rows = new ArrayList<>();
        rows.add(HEADER);
        List<String> notes = new ArrayList<>();
        for (JsonNode b : backends) {
            rows.add(new String[] {
                    b.path("domain").asText("-"), b.path("target").asText("-"), b.path("image").asText("-"),
                    b.path("format").asText("-"), b.path("socket").asText("-"), val(b, "pid"), b.path("state").asText("-"),
                    val(b, "queues"), uptime(b.path("uptime_s")), val(b, "restarts"),
                    b.has("connected") ? (b.path("connected").asBoolean() ? "yes" : "no") : "-",
                    val(b, "requests"), val(b, "errors")});
            if (b.hasNonNull("last_error")) {
                notes.add(b.path("domain").asText() + " " + b.path("target").asText() + ": " + b.path("last_error").asText()
                        + (b.has("next_retry_s") ? " (next restart in " + b.path("next_retry_s").asText() + " s)" : ""));
            }
        }
        int[] w = new int[HEADER.length];
        for (String[] r : rows) {
            for (int i = 0; i < r.length; i++) {
                w[i] = Math.max(w[i], r[i].length());
            }
        }
        StringBuilder sb = new StringBuilder();
        for (String[] r : rows) {
            for (int i = 0; i < r.length; i++) {
                sb.append(i == r.length - 1 ? r[i] : String.format("%-" + w[i] + "s  ", r[i]));
            }
            sb.append('\n');
        }
        if (rows.size() == 1) {
            sb.append("(no backends)\n");
        }
        for (String n : notes) {
            sb.append("last error: ").append(n).append('\n');
        }
        return sb.toString();
    }

    private static String val(JsonNode b, String k) {
        JsonNode v = b.path(k);
        return v.isMissingNode() || v.isNull() ? "-" : v.asText();
    }

    static String uptime(JsonNode s) {
        if (s.isMissingNode() || s.isNull()) {
            return "-";
        }
        long t = s.asLong();
        if (t < 60) {
            return t + "s";
        }
        if (t < 3600) {
            return (t / 60) + "m" + (t % 60) + "s";
        }
        if (t < 86400) {
            return (t / 3600) + "h" + (t % 3600 / 60) + "m";
        }
        return (t / 86400) + "d" + (t % 86400 / 3600) + "h";
    }
}
