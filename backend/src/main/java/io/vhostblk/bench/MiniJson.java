package io.vhostblk.bench;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Just enough JSON for the comparison harness: parse the one-line results of vhostblk-bench and
 * fio's {@code --output-format=json} (objects become {@link LinkedHashMap}, arrays {@link List},
 * numbers {@link Double}), and write JSON with a small builder. The backend module keeps Jackson
 * off its classpath on purpose (see {@link io.vhostblk.control.Json}).
 */
final class MiniJson {
    private final String s;
    private int i;

    private MiniJson(String s) {
        this.s = s;
    }

    /** Parses one JSON value; throws {@link IllegalArgumentException} on malformed text. */
    static Object parse(String text) {
        MiniJson p = new MiniJson(text);
        p.ws();
        Object v = p.value();
        p.ws();
        if (p.i != p.s.length()) {
            throw p.error("trailing text");
        }
        return v;
    }

    /** Follows a path of object keys; null when any step is missing or not an object. */
    static Object at(Object root, String... keys) {
        Object o = root;
        for (String k : keys) {
            if (!(o instanceof Map<?, ?> m)) {
                return null;
            }
            o = m.get(k);
        }
        return o;
    }

    /** A number at a path, or NaN. */
    static double num(Object root, String... keys) {
        return at(root, keys) instanceof Double d ? d : Double.NaN;
    }

    private IllegalArgumentException error(String what) {
        return new IllegalArgumentException("JSON: " + what + " at offset " + i);
    }

    private void ws() {
        while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
            i++;
        }
    }

    private Object value() {
        if (i >= s.length()) {
            throw error("unexpected end");
        }
        char c = s.charAt(i);
        return switch (c) {
            case '{' -> object();
            case '[' -> array();
            case '"' -> string();
            case 't' -> literal("true", Boolean.TRUE);
            case 'f' -> literal("false", Boolean.FALSE);
            case 'n' -> literal("null", null);
            default -> number();
        };
    }

    private Object literal(String word, Object v) {
        if (!s.startsWith(word, i)) {
            throw error("bad literal");
        }
        i += word.length();
        return v;
    }

    private Map<String, Object> object() {
        Map<String, Object> m = new LinkedHashMap<>();
        i++;
        ws();
        if (i < s.length() && s.charAt(i) == '}') {
            i++;
            return m;
        }
        while (true) {
            ws();
            if (i >= s.length() || s.charAt(i) != '"') {
                throw error("object key expected");
            }
            String k = string();
            ws();
            if (i >= s.length() || s.charAt(i) != ':') {
                throw error("':' expected");
            }
            i++;
            ws();
            m.put(k, value());
            ws();
            if (i >= s.length()) {
                throw error("unterminated object");
            }
            char c = s.charAt(i++);
            if (c == '}') {
                return m;
            }
            if (c != ',') {
                throw error("',' or '}' expected");
            }
        }
    }

    private List<Object> array() {
        List<Object> l = new ArrayList<>();
        i++;
        ws();
        if (i < s.length() && s.charAt(i) == ']') {
            i++;
            return l;
        }
        while (true) {
            ws();
            l.add(value());
            ws();
            if (i >= s.length()) {
                throw error("unterminated array");
            }
            char c = s.charAt(i++);
            if (c == ']') {
                return l;
            }
            if (c != ',') {
                throw error("',' or ']' expected");
            }
        }
    }

    private String string() {
        StringBuilder b = new StringBuilder();
        i++;
        while (true) {
            if (i >= s.length()) {
                throw error("unterminated string");
            }
            char c = s.charAt(i++);
            if (c == '"') {
                return b.toString();
            }
            if (c != '\\') {
                b.append(c);
                continue;
            }
            if (i >= s.length()) {
                throw error("bad escape");
            }
            char e = s.charAt(i++);
            switch (e) {
                case '"', '\\', '/' -> b.append(e);
                case 'b' -> b.append('\b');
                case 'f' -> b.append('\f');
                case 'n' -> b.append('\n');
                case 'r' -> b.append('\r');
                case 't' -> b.append('\t');
                case 'u' -> {
                    if (i + 4 > s.length()) {
                        throw error("bad \\u escape");
                    }
                    b.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                    i += 4;
                }
                default -> throw error("bad escape");
            }
        }
    }

    private Double number() {
        int start = i;
        while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) {
            i++;
        }
        if (start == i) {
            throw error("value expected");
        }
        try {
            return Double.parseDouble(s.substring(start, i));
        } catch (NumberFormatException e) {
            throw error("bad number");
        }
    }

    // ------------------------------------------------------------------ writing

    /** Appends JSON with commas handled; {@code obj}/{@code arr} open, {@code end} closes. */
    static final class Writer {
        private final StringBuilder b = new StringBuilder(4096);
        private final List<Boolean> first = new ArrayList<>();
        private final boolean pretty;

        Writer(boolean pretty) {
            this.pretty = pretty;
        }

        private void sep() {
            if (first.isEmpty()) {
                return;
            }
            int top = first.size() - 1;
            if (!first.get(top)) {
                b.append(',');
            }
            first.set(top, false);
            if (pretty) {
                b.append('\n').append("  ".repeat(first.size()));
            }
        }

        private Writer key(String k) {
            sep();
            b.append(io.vhostblk.control.Json.quote(k)).append(pretty ? ": " : ":");
            return this;
        }

        Writer obj() {
            sep();
            b.append('{');
            first.add(true);
            return this;
        }

        Writer obj(String k) {
            key(k);
            b.append('{');
            first.add(true);
            return this;
        }

        Writer arr(String k) {
            key(k);
            b.append('[');
            first.add(true);
            return this;
        }

        Writer end(char close) {
            boolean empty = first.removeLast();
            if (pretty && !empty) {
                b.append('\n').append("  ".repeat(first.size()));
            }
            b.append(close);
            return this;
        }

        Writer endObj() {
            return end('}');
        }

        Writer endArr() {
            return end(']');
        }

        Writer str(String k, String v) {
            key(k).b.append(io.vhostblk.control.Json.quote(v));
            return this;
        }

        Writer num(String k, long v) {
            key(k).b.append(v);
            return this;
        }

        /** A double rounded to {@code decimals}, null when not finite. */
        Writer num(String k, double v, int decimals) {
            key(k);
            b.append(Double.isFinite(v) ? String.format(Locale.ROOT, "%." + decimals + "f", v) : "null");
            return this;
        }

        Writer bool(String k, boolean v) {
            key(k).b.append(v);
            return this;
        }

        /** An element of the enclosing array. */
        Writer val(String v) {
            sep();
            b.append(io.vhostblk.control.Json.quote(v));
            return this;
        }

        Writer val(double v, int decimals) {
            sep();
            b.append(Double.isFinite(v) ? String.format(Locale.ROOT, "%." + decimals + "f", v) : "null");
            return this;
        }

        @Override
        public String toString() {
            return b.toString();
        }
    }
}
