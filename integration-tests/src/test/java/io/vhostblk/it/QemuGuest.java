package io.vhostblk.it;

import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

/**
 * One boot of the tiny test guest under QEMU (TCG) with its disk /dev/vda served over
 * vhost-user-blk by a backend listening on a Unix socket. The serial console and QEMU's
 * stderr go to a log file; the guest's VHOSTBLK-RESULT / VHOSTBLK-DONE lines are parsed into
 * a {@link GuestResult}.
 */
public final class QemuGuest {
    private final Builder b;

    private QemuGuest(Builder b) {
        this.b = b;
    }

    public static Builder builder() {
        return new Builder();
    }

    public List<String> command() {
        GuestImage img = b.image != null ? b.image : GuestImage.get();
        List<String> cmd = new ArrayList<>();
        cmd.add(b.qemuBinary);
        cmd.addAll(List.of("-machine", "q35,accel=tcg", "-cpu", "max", "-smp", Integer.toString(b.smp)));
        String mem = b.memoryMiB + "M";
        cmd.addAll(List.of("-m", mem,
                "-object", "memory-backend-memfd,id=mem,size=" + mem + ",share=on",
                "-numa", "node,memdev=mem"));
        cmd.addAll(List.of("-kernel", img.kernel().toString(), "-initrd", img.initrd().toString()));
        StringBuilder append = new StringBuilder("console=ttyS0 quiet panic=-1 vhostblk.test=").append(b.test);
        if (!b.args.isEmpty()) {
            append.append(" vhostblk.args=").append(b.args.entrySet().stream()
                    .map(e -> e.getKey() + ":" + e.getValue()).collect(Collectors.joining(",")));
        }
        if (b.extraAppend != null) {
            append.append(' ').append(b.extraAppend);
        }
        // no network device: nothing to emulate and no iPXE option ROM to run at boot
        cmd.addAll(List.of("-append", append.toString(), "-nographic", "-nic", "none"));
        if (b.noReboot) {
            cmd.add("-no-reboot");
        }
        cmd.addAll(List.of("-chardev", "socket,id=vub0,path=" + escape(b.socket.toString())
                + (b.reconnect ? ",reconnect=1" : "")));
        StringBuilder dev = new StringBuilder("vhost-user-blk-pci,chardev=vub0");
        if (b.numQueues != null) {
            dev.append(",num-queues=").append(b.numQueues);
        }
        if (b.queueSize != null) {
            dev.append(",queue-size=").append(b.queueSize);
        }
        if (b.eventIdx != null) {
            dev.append(",event_idx=").append(b.eventIdx ? "on" : "off");
        }
        if (b.packed != null) {
            dev.append(",packed=").append(b.packed ? "on" : "off");
        }
        if (b.configWce != null) {
            dev.append(",config-wce=").append(b.configWce ? "on" : "off");
        }
        cmd.addAll(List.of("-device", dev.toString()));
        cmd.addAll(b.extraQemuArgs);
        return cmd;
    }

    /**
     * Boots the guest and waits for QEMU to exit (the guest powers off after its test).
     * On timeout QEMU is killed and an AssertionError carries the last console lines.
     */
    public GuestResult run() {
        List<String> cmd = command();
        Path log = b.logFile;
        try {
            Files.createDirectories(log.toAbsolutePath().getParent());
            Files.writeString(log, "# " + String.join(" ", cmd) + "\n", StandardCharsets.UTF_8);
            long t0 = System.nanoTime();
            Process p = ChildProcesses.register(new ProcessBuilder(cmd)
                    .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")))
                    .redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()))
                    .start());
            boolean exited;
            long deadline = t0 + b.timeout.toNanos();
            long backendDiedAt = 0;
            try {
                while (true) {
                    exited = p.waitFor(500, TimeUnit.MILLISECONDS);
                    long now = System.nanoTime();
                    if (exited || now > deadline) {
                        break;
                    }
                    if (b.watched != null && !b.watched.isAlive()) {
                        if (backendDiedAt == 0) {
                            backendDiedAt = now;
                        } else if (now - backendDiedAt > TimeUnit.SECONDS.toNanos(5)) {
                            break; // the guest cannot finish without its disk: fail fast
                        }
                    }
                }
            } catch (InterruptedException e) {
                p.destroyForcibly();
                Thread.currentThread().interrupt();
                throw new AssertionError("interrupted while waiting for QEMU", e);
            }
            Duration elapsed = Duration.ofNanos(System.nanoTime() - t0);
            if (!exited) {
                p.destroyForcibly();
                try {
                    p.waitFor(10, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                if (!p.isAlive()) {
                    ChildProcesses.unregister(p);
                }
                GuestResult partial = GuestResult.parse(log, -1, elapsed);
                if (backendDiedAt != 0) {
                    throw new AssertionError("backend died during guest test '" + b.test + "', QEMU killed; "
                            + partial.describe() + "\nbackend log " + b.watched.log() + " (last lines):\n"
                            + b.watched.logTail(30));
                }
                throw new AssertionError("QEMU guest '" + b.test + "' timed out after " + b.timeout.toSeconds()
                        + " s and was killed; " + partial.describe());
            }
            ChildProcesses.unregister(p);
            GuestResult r = GuestResult.parse(log, p.exitValue(), elapsed);
            System.out.printf("[guest %s] %.1f s, done=%s, qemu exit %d, %s, log %s%n", b.test,
                    elapsed.toMillis() / 1000.0, r.doneRc().isPresent() ? r.doneRc().getAsInt() : "missing",
                    r.qemuExitCode(), summary(r), log);
            return r;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static String summary(GuestResult r) {
        Map<String, String> v = new LinkedHashMap<>(r.values());
        for (String k : List.of("test", "guest_cpus", "vda_size_sectors")) {
            v.remove(k);
        }
        v.replaceAll((k, x) -> x.length() > 16 ? x.substring(0, 12) + "..." : x);
        return v.toString();
    }

    /** QEMU option values: a comma is written as two commas. */
    static String escape(String s) {
        return s.replace(",", ",,");
    }

    public static final class Builder {
        private String qemuBinary = "qemu-system-x86_64";
        private GuestImage image;
        private int smp = 2;
        private int memoryMiB = 512;
        private String test = "info";
        private final Map<String, String> args = new LinkedHashMap<>();
        private String extraAppend;
        private Path socket;
        private Integer numQueues;
        private Integer queueSize;
        private Boolean eventIdx;
        private Boolean packed;
        private Boolean configWce;
        private boolean noReboot = true;
        private boolean reconnect;
        private Duration timeout = Duration.ofSeconds(180);
        private Path logFile;
        private final List<String> extraQemuArgs = new ArrayList<>();
        private BackendProcess watched;

        public Builder qemuBinary(String v) { this.qemuBinary = v; return this; }
        public Builder image(GuestImage v) { this.image = v; return this; }
        public Builder smp(int v) { this.smp = v; return this; }
        public Builder memoryMiB(int v) { this.memoryMiB = v; return this; }
        /** The guest test: fio, dd, serial, discard, reboot, info. */
        public Builder test(String v) { this.test = v; return this; }

        /** One entry of vhostblk.args (no spaces or commas). */
        public Builder arg(String key, Object value) {
            String v = String.valueOf(value);
            if (!key.matches("[A-Za-z0-9_]+") || !v.matches("[A-Za-z0-9_.:+-]+")) {
                throw new IllegalArgumentException("bad guest arg " + key + "=" + v);
            }
            args.put(key, v);
            return this;
        }

        public Builder extraAppend(String v) { this.extraAppend = v; return this; }
        public Builder socket(Path v) { this.socket = v; return this; }
        public Builder numQueues(Integer v) { this.numQueues = v; return this; }
        public Builder queueSize(Integer v) { this.queueSize = v; return this; }
        public Builder eventIdx(Boolean v) { this.eventIdx = v; return this; }
        public Builder packed(Boolean v) { this.packed = v; return this; }
        public Builder configWce(Boolean v) { this.configWce = v; return this; }
        /** Default true; the reboot test needs false. */
        public Builder noReboot(boolean v) { this.noReboot = v; return this; }
        /** reconnect=1 on the vhost-user chardev (QEMU retries connecting every second). */
        public Builder reconnect(boolean v) { this.reconnect = v; return this; }
        public Builder timeout(Duration v) { this.timeout = v; return this; }
        public Builder logFile(Path v) { this.logFile = v; return this; }
        public Builder extraQemuArgs(String... v) { this.extraQemuArgs.addAll(List.of(v)); return this; }
        /** If this backend dies while the guest runs, kill QEMU after 5 s and fail with both logs. */
        public Builder watch(BackendProcess v) { this.watched = v; return this; }

        public QemuGuest build() {
            Objects.requireNonNull(socket, "socket");
            Objects.requireNonNull(logFile, "logFile");
            if (!test.matches("[a-z0-9_]+")) {
                throw new IllegalArgumentException("bad test name " + test);
            }
            return new QemuGuest(this);
        }

        public GuestResult run() {
            return build().run();
        }
    }
}
