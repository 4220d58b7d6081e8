package io.vhostblk.plugin.xml;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * One disk served by a vhostblk backend: what the backend needs (from the domain's vhostblk
 * metadata). {@code cache} is the backend's mode (none | writeback) or null for its default;
 * {@code discard} is libvirt's discard mode (unmap | ignore) or null.
 */
public record DiskSpec(
        String target,
        String socket,
        String image,
        String sourceType,
        String format,
        boolean readOnly,
        String serial,
        String cache,
        String discard,
        int queues,
        Integer workers,
        Integer pollUs) {

    public DiskSpec {
        Objects.requireNonNull(target, "target");
        Objects.requireNonNull(socket, "socket");
        Objects.requireNonNull(image, "image");
        Objects.requireNonNull(format, "format");
        if (sourceType == null) {
            sourceType = "file";
        }
        if (queues < 1) {
            throw new IllegalArgumentException("queues must be >= 1");
        }
    }

    /**
     * Arguments for {@code bin/vhostblk-backend} (after the launcher). {@code discardFlag} says
     * whether the backend build understands {@code --discard}.
     */
    public List<String> backendArgs(boolean discardFlag) {
        List<String> a = new ArrayList<>(List.of("--socket-path", socket, "--blk-file", image, "--format", format,
                "--num-queues", Integer.toString(queues)));
        if (readOnly) {
            a.add("--read-only");
        }
        if (serial != null && !serial.isEmpty()) {
            a.addAll(List.of("--serial", serial));
        }
        if (cache != null) {
            a.addAll(List.of("--cache", cache));
        }
        if (workers != null) {
            a.addAll(List.of("--workers", Integer.toString(workers)));
        }
        if (pollUs != null) {
            a.addAll(List.of("--poll-us", Integer.toString(pollUs)));
        }
        if (discardFlag && discard != null) {
            a.addAll(List.of("--discard", discard));
        }
        return a;
    }
}
