package io.vhostblk.plugin.config;

import java.io.IOException;
import java.io.Reader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Properties;

/**
 * vhostblk's host configuration: a Java properties file, {@code /etc/vhostblk/vhostblk.conf} by
 * default ({@code --config FILE} or {@code VHOSTBLK_CONFIG} override). Every key is optional.
 */
public record PluginConfig(
        Path file,
        String libvirtUri,
        Path runDir,
        Path logDir,
        long logMaxBytes,
        int logKeep,
        Path backendLauncher,
        String backendUser,
        String socketGroup,
        Duration backendStartTimeout,
        Duration backendStopTimeout,
        int reconnectSeconds,
        Duration backoffMax,
        String backendJavaOpts) {

    public static final Path DEFAULT_FILE = Path.of("/etc/vhostblk/vhostblk.conf");

    public Path daemonSocket() {
        return runDir.resolve("daemon.sock");
    }

    public Path socketDir() {
        return runDir.resolve("sockets");
    }

    public Path controlDir() {
        return runDir.resolve("control");
    }

    public Path stateDir() {
        return runDir.resolve("state");
    }

    /** Loads {@code file} (or the default / $VHOSTBLK_CONFIG); a missing default file means all defaults. */
    public static PluginConfig load(Path file) throws IOException {
        boolean explicit = file != null;
        if (file == null) {
            String env = System.getenv("VHOSTBLK_CONFIG");
            file = env != null && !env.isBlank() ? Path.of(env) : DEFAULT_FILE;
            explicit = env != null && !env.isBlank();
        }
        Properties p = new Properties();
        if (Files.isRegularFile(file)) {
            try (Reader r = Files.newBufferedReader(file)) {
                p.load(r);
            }
        } else if (explicit) {
            throw new IOException("configuration file " + file + " not found");
        }
        return from(file, p);
    }

    public static PluginConfig from(Path file, Properties p) {
        String home = System.getProperty("vhostblk.home", "/opt/vhostblk");
        return new PluginConfig(file,
                p.getProperty("libvirt.uri", "qemu:///system").trim(),
                Path.of(p.getProperty("run.dir", "/run/vhostblk").trim()),
                Path.of(p.getProperty("log.dir", "/var/log/vhostblk").trim()),
                Long.parseLong(p.getProperty("log.max-bytes", "10485760").trim()),
                Integer.parseInt(p.getProperty("log.keep", "5").trim()),
                Path.of(p.getProperty("backend.launcher", home + "/bin/vhostblk-backend").trim()),
                blankToNull(p.getProperty("backend.user", "")),
                blankToNull(p.getProperty("socket.group", "libvirt-qemu")),
                Duration.ofSeconds(Long.parseLong(p.getProperty("backend.start-timeout-s", "60").trim())),
                Duration.ofSeconds(Long.parseLong(p.getProperty("backend.stop-timeout-s", "20").trim())),
                Integer.parseInt(p.getProperty("reconnect.seconds", "1").trim()),
                Duration.ofSeconds(Long.parseLong(p.getProperty("supervisor.backoff-max-s", "30").trim())),
                blankToNull(p.getProperty("backend.java-opts", "")));
    }

    private static String blankToNull(String s) {
        return s == null || s.isBlank() ? null : s.trim();
    }
}
