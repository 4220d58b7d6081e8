package io.vhostblk.plugin.daemon;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * What the installed backend understands, from its {@code --help}: options that newer backends
 * add ({@code --control-socket}, {@code --discard}) are only passed when present.
 */
public record BackendFeatures(boolean controlSocket, boolean discard) {

    public static BackendFeatures probe(Path launcher, Map<String, String> env) {
        try {
            ProcessBuilder pb = new ProcessBuilder(List.of(launcher.toString(), "--help")).redirectErrorStream(true);
            pb.environment().putAll(env);
            Process p = pb.start();
            p.getOutputStream().close();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(60, TimeUnit.SECONDS)) {
                p.destroyForcibly();
            }
            return new BackendFeatures(out.contains("--control-socket"), out.contains("--discard"));
        } catch (IOException e) {
            return new BackendFeatures(false, false);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return new BackendFeatures(false, false);
        }
    }
}
