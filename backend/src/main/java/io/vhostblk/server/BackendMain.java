package io.vhostblk.server;

import io.vhostblk.blk.BlkDevice;
import io.vhostblk.image.CacheMode;
import io.vhostblk.image.RawImage;
import io.vhostblk.image.qcow2.Qcow2Exception;
import io.vhostblk.image.qcow2.Qcow2Image;
import io.vhostblk.linux.ErrnoException;
import io.vhostblk.linux.IoUring;
import io.vhostblk.linux.Libc;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.DefaultParser;
import org.apache.commons.cli.HelpFormatter;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;
import org.apache.commons.cli.ParseException;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;
import sun.misc.Signal;

import java.io.PrintWriter;
import java.util.Arrays;

/**
 * {@code vhostblk-backend}: one vhost-user-blk server for one disk, following QEMU's
 * vhost-user backend-program conventions (--socket-path | --fd, --print-capabilities, no
 * daemonizing, quick clean exit on SIGTERM).
 */
public final class BackendMain {
    static final String NAME = "vhostblk-backend";
    public static final String CAPABILITIES = "{\"type\": \"block\", \"features\": [\"read-only\", \"blk-file\"]}";

    private BackendMain() {
    }

    static Options options() {
        Options o = new Options();
        o.addOption(Option.builder().longOpt("socket-path").hasArg().argName("PATH").desc("listen on this UNIX socket").build());
        o.addOption(Option.builder().longOpt("fd").hasArg().argName("N").desc("serve this already connected socket fd").build());
        o.addOption(Option.builder().longOpt("blk-file").hasArg().argName("PATH").desc("image: file or block device").build());
        o.addOption(Option.builder().longOpt("format").hasArg().argName("FMT").desc("image format: raw or qcow2 (never probed; default raw)").build());
        o.addOption(Option.builder().longOpt("read-only").desc("export read-only (VIRTIO_BLK_F_RO)").build());
        o.addOption(Option.builder().longOpt("print-capabilities").desc("print the capabilities JSON and exit").build());
        o.addOption(Option.builder().longOpt("num-queues").hasArg().argName("N").desc("most virtqueues offered; QEMU uses one per vCPU unless told (default 16)").build());
        o.addOption(Option.builder().longOpt("workers").hasArg().argName("M").desc("worker threads (default 1)").build());
        o.addOption(Option.builder().longOpt("queue-size").hasArg().argName("N").desc("largest ring accepted (default 1024)").build());
        o.addOption(Option.builder().longOpt("serial").hasArg().argName("STR").desc("serial answered to GET_ID (<= 20 bytes)").build());
        o.addOption(Option.builder().longOpt("engine").hasArg().argName("E").desc("io_uring or threads (default io_uring when the host allows it)").build());
        o.addOption(Option.builder().longOpt("cache").hasArg().argName("MODE").desc("none (O_DIRECT, default) or writeback").build());
        o.addOption(Option.builder().longOpt("poll-us").hasArg().argName("N").desc("busy-poll N microseconds before sleeping (default 0)").build());
        o.addOption(Option.builder().longOpt("io-threads").hasArg().argName("N").desc("I/O threads per worker for --engine threads (default 4)").build());
        o.addOption(Option.builder().longOpt("mlock").desc("lock all memory (mlockall) so reclaim never waits on us").build());
        o.addOption(Option.builder().longOpt("l2-cache-size").hasArg().argName("BYTES").desc("qcow2 L2 table cache (k/m/g suffixes; default 4m)").build());
        o.addOption(Option.builder().longOpt("refcount-cache-size").hasArg().argName("BYTES").desc("qcow2 refcount block cache (default 1m)").build());
        o.addOption(Option.builder().longOpt("control-socket").hasArg().argName("PATH").desc("answer 'status' with a JSON line on this UNIX socket").build());
        o.addOption(Option.builder().longOpt("help").desc("show this help").build());
        return o;
    }

    static BackendConfig parse(String[] args) throws ParseException {
        CommandLine cl = DefaultParser.builder().build().parse(options(), args);
        if (!cl.getArgList().isEmpty()) {
            throw new ParseException("unexpected argument '" + cl.getArgList().getFirst() + "'");
        }
        String engine = cl.getOptionValue("engine");
        if (engine == null) {
            engine = IoUring.isAvailable() ? "io_uring" : "threads";
        }
        return new BackendConfig(
                cl.getOptionValue("socket-path"),
                intOpt(cl, "fd", -1),
                cl.getOptionValue("blk-file"),
                cl.getOptionValue("format", "raw"),
                cl.hasOption("read-only"),
                intOpt(cl, "num-queues", 16),
                intOpt(cl, "workers", 1),
                intOpt(cl, "queue-size", 1024),
                cl.getOptionValue("serial"),
                engine,
                CacheMode.parse(cl.getOptionValue("cache", "none")),
                intOpt(cl, "poll-us", 0),
                intOpt(cl, "io-threads", 4),
                cl.hasOption("mlock"),
                cl.getOptionValue("control-socket"),
                sizeOpt(cl, "l2-cache-size", 4L << 20),
                sizeOpt(cl, "refcount-cache-size", 1L << 20));
    }

    private static long sizeOpt(CommandLine cl, String name, long dflt) throws ParseException {
        String v = cl.getOptionValue(name);
        if (v == null) {
            return dflt;
        }
        String t = v.trim().toLowerCase(java.util.Locale.ROOT);
        long mult = switch (t.isEmpty() ? ' ' : t.charAt(t.length() - 1)) {
            case 'k' -> 1L << 10;
            case 'm' -> 1L << 20;
            case 'g' -> 1L << 30;
            default -> 1;
        };
        try {
            return Math.multiplyExact(Long.parseLong(mult == 1 ? t : t.substring(0, t.length() - 1)), mult);
        } catch (NumberFormatException | ArithmeticException e) {
            throw new ParseException("--" + name + " needs a size such as 4m, not '" + v + "'");
        }
    }

    private static int intOpt(CommandLine cl, String name, int dflt) throws ParseException {
        String v = cl.getOptionValue(name);
        if (v == null) {
            return dflt;
        }
        try {
            return Integer.parseInt(v);
        } catch (NumberFormatException e) {
            throw new ParseException("--" + name + " needs a number, not '" + v + "'");
        }
    }

    public static void main(String[] args) {
        System.exit(run(args));
    }

    static int run(String[] args) {
        if (Arrays.asList(args).contains("--print-capabilities")) {
            System.out.println(CAPABILITIES);
            return 0;
        }
        if (Arrays.asList(args).contains("--help")) {
            new HelpFormatter().printHelp(new PrintWriter(System.out, true), 100, NAME + " --socket-path PATH | --fd N --blk-file PATH [options]",
                    "", options(), 2, 2, "");
            return 0;
        }
        BackendConfig config;
        try {
            config = parse(args);
        } catch (ParseException | IllegalArgumentException e) {
            System.err.println(NAME + ": " + e.getMessage() + " (see --help)");
            return 2;
        }
        Logger log = LogManager.getLogger(BackendMain.class);
        io.vhostblk.image.BlockImage image;
        BackendServer server;
        try {
            if (config.mlock()) {
                Libc.mlockall(Libc.MCL_CURRENT | Libc.MCL_FUTURE);
            }
            if ("io_uring".equals(config.engine()) && !IoUring.isAvailable()) {
                throw new IllegalArgumentException("io_uring is not available on this host (kernel.io_uring_disabled or seccomp); use --engine threads");
            }
            image = "qcow2".equals(config.format())
                    ? Qcow2Image.open(config.blkFile(), config.readOnly(), io.vhostblk.image.qcow2.Options.defaults().withCache(config.cache())
                            .withCacheSizes(config.l2CacheBytes(), config.refcountCacheBytes()))
                    : RawImage.open(config.blkFile(), config.readOnly(), config.cache());
        } catch (ErrnoException | IllegalArgumentException | Qcow2Exception e) {
            System.err.println(NAME + ": " + e.getMessage());
            return 1;
        }
        BlkDevice device;
        try {
            device = new BlkDevice(image, config.numQueues(), config.serial());
            server = new BackendServer(config, device);
        } catch (ErrnoException | IllegalArgumentException e) {
            image.close();
            System.err.println(NAME + ": " + e.getMessage());
            return 1;
        }
        io.vhostblk.control.ControlServer control = null;
        if (config.controlSocket() != null) {
            try {
                control = new io.vhostblk.control.ControlServer(java.nio.file.Path.of(config.controlSocket()), server::status);
            } catch (java.io.IOException e) {
                server.close();
                image.close();
                System.err.println(NAME + ": control socket " + config.controlSocket() + ": " + e.getMessage());
                return 1;
            }
        }
        Signal.handle(new Signal("TERM"), sig -> server.stop());
        Signal.handle(new Signal("INT"), sig -> server.stop());
        log.info("serving {} with {} queue(s), {} worker(s), engine {}, cache {}{}", image.describe(), config.numQueues(),
                config.workers(), config.engine(), config.cache().name().toLowerCase(),
                config.pollUs() > 0 ? ", poll " + config.pollUs() + " us" : "");
        try {
            server.run();
        } catch (RuntimeException e) {
            log.error("backend failed", e);
            if (control != null) {
                control.close();
            }
            server.close();
            image.close();
            return 1;
        }
        if (control != null) {
            control.close();
        }
        server.close();
        image.close();
        log.info("stopped cleanly after {} connection(s)", server.connections());
        return 0;
    }
}
