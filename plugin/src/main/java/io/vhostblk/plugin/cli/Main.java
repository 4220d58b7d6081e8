package io.vhostblk.plugin.cli;

import com.fasterxml.jackson.databind.JsonNode;
import io.vhostblk.plugin.config.PluginConfig;
import io.vhostblk.plugin.daemon.Daemon;
import io.vhostblk.plugin.daemon.DaemonClient;
import io.vhostblk.plugin.daemon.Json;
import io.vhostblk.plugin.hook.HookMain;
import io.vhostblk.plugin.libvirt.LibvirtOps;
import io.vhostblk.plugin.xml.ConvertOptions;
import io.vhostblk.plugin.xml.DiskSpec;
import io.vhostblk.plugin.xml.DomainDisks;
import io.vhostblk.plugin.xml.DomainXmlRewriter;
import io.vhostblk.plugin.xml.RewriteException;
import io.vhostblk.plugin.xml.RewriteResult;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.DefaultParser;
import org.apache.commons.cli.HelpFormatter;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;
import org.apache.commons.cli.ParseException;
import org.libvirt.LibvirtException;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * {@code vhostblk COMMAND ...}: convert | revert | attach | detach | status | daemon | hook |
 * install-hook. Exit codes: 0 ok, 1 failure, 2 usage.
 */
public final class Main {
    static final String USAGE = """
            usage: vhostblk COMMAND [options]   (every command takes --config FILE)
              convert DOMAIN [--disk TARGET ...] [--queues N] [--workers M]
              convert --xml-in FILE --xml-out FILE [--disk ...] [--queues N] [--workers M]   (offline, no libvirt)
              revert DOMAIN [--disk TARGET ...]          revert --xml-in FILE --xml-out FILE [--disk ...]
              attach DOMAIN --source PATH --target vdX [--format raw|qcow2] [--queues N] [--workers M]
              detach DOMAIN --target vdX [--timeout SECONDS]
              status [--json]
              daemon                                     the host agent (see vhostblk.service)
              install-hook [--hooks-dir DIR]             installs the libvirt hook (then restart libvirtd)
              hook DOMAIN OP SUBOP [EXTRA] < XML          what libvirt runs (do not call by hand)""";

    private Main() {}

    public static void main(String[] args) {
        System.exit(run(args, System.in, System.out, System.err));
    }

    public static int run(String[] args, InputStream in, PrintStream out, PrintStream err) {
        if (args.length == 0 || List.of("-h", "--help", "help").contains(args[0])) {
            out.println(USAGE);
            return args.length == 0 ? 2 : 0;
        }
        String cmd = args[0];
        String[] rest = Arrays.copyOfRange(args, 1, args.length);
        // log4j is configured per mode before the first logger exists
        if (System.getProperty("log4j2.configurationFile") == null) {
            System.setProperty("log4j2.configurationFile", "daemon".equals(cmd) ? "log4j2-daemon.xml" : "log4j2-cli.xml");
        }
        try {
            return switch (cmd) {
                case "convert" -> convert(rest, out, err);
                case "revert" -> revert(rest, out, err);
                case "attach" -> attach(rest, out, err);
                case "detach" -> detach(rest, out, err);
                case "status" -> status(rest, out, err);
                case "daemon" -> daemon(rest);
                case "hook" -> hook(rest, in, err);
                case "install-hook" -> installHook(rest, out);
                default -> {
                    err.println("vhostblk: unknown command '" + cmd + "'\n" + USAGE);
                    yield 2;
                }
            };
        } catch (ParseException e) {
            err.println("vhostblk " + cmd + ": " + e.getMessage() + "\n" + USAGE);
            return 2;
        } catch (RewriteException | IllegalArgumentException e) {
            err.println("vhostblk " + cmd + ": " + e.getMessage());
            return 1;
        } catch (LibvirtException e) {
            err.println("vhostblk " + cmd + ": libvirt: " + e.getMessage());
            return 1;
        } catch (IOException e) {
            err.println("vhostblk " + cmd + ": " + e.getMessage());
            return 1;
        } catch (Exception e) {
            err.println("vhostblk " + cmd + ": " + e);
            return 1;
        }
    }

    private static Options common() {
        Options o = new Options();
        o.addOption(Option.builder().longOpt("config").hasArg().argName("FILE").desc("configuration file").build());
        return o;
    }

    private static CommandLine parse(Options o, String[] args) throws ParseException {
        return DefaultParser.builder().build().parse(o, args);
    }

    private static PluginConfig config(CommandLine cl) throws IOException {
        return PluginConfig.load(cl.hasOption("config") ? Path.of(cl.getOptionValue("config")) : null);
    }

    private static Integer intOpt(CommandLine cl, String name) throws ParseException {
        String v = cl.getOptionValue(name);
        if (v == null) {
            return null;
        }
        try {
            return Integer.valueOf(v);
        } catch (NumberFormatException e) {
            throw new ParseException("--" + name + " needs a number, not '" + v + "'");
        }
    }

    private static Set<String> disks(CommandLine cl) {
        Set<String> s = new LinkedHashSet<>();
        String[] v = cl.getOptionValues("disk");
        if (v != null) {
            for (String x : v) {
                for (String t : x.split(",")) {
                    if (!t.isBlank()) {
                        s.add(t.trim());
                    }
                }
            }
        }
        return s;
    }

    private static Options rewriteOptions(boolean convert) {
        Options o = common();
        o.addOption(Option.builder().longOpt("disk").hasArg().argName("TARGET").desc("disk target (repeatable); default all").build());
        o.addOption(Option.builder().longOpt("xml-in").hasArg().argName("FILE").desc("offline: read this domain XML").build());
        o.addOption(Option.builder().longOpt("xml-out").hasArg().argName("FILE").desc("offline: write the result here (- = stdout)").build());
        if (convert) {
            o.addOption(Option.builder().longOpt("queues").hasArg().argName("N").desc("virtqueues per disk").build());
            o.addOption(Option.builder().longOpt("workers").hasArg().argName("M").desc("backend worker threads").build());
            o.addOption(Option.builder().longOpt("socket-dir").hasArg().argName("DIR").desc("offline: socket directory").build());
        }
        return o;
    }

    private static String domainArg(CommandLine cl, String cmd) throws ParseException {
        List<String> a = cl.getArgList();
        if (a.size() != 1) {
            throw new ParseException(cmd + " needs exactly one DOMAIN (name or UUID)" + (a.isEmpty() ? "" : ", got " + a));
        }
        return a.getFirst();
    }

    private static int convert(String[] args, PrintStream out, PrintStream err) throws Exception {
        CommandLine cl = parse(rewriteOptions(true), args);
        PluginConfig cfg = config(cl);
        String socketDir = cl.getOptionValue("socket-dir", cfg.socketDir().toString());
        ConvertOptions o = new ConvertOptions(disks(cl), intOpt(cl, "queues"), intOpt(cl, "workers"), null, socketDir,
                cfg.reconnectSeconds());
        RewriteResult r;
        String what;
        if (cl.hasOption("xml-in") || cl.hasOption("xml-out")) {
            offlineCheck(cl);
            String xml = Files.readString(Path.of(cl.getOptionValue("xml-in")));
            r = new DomainXmlRewriter().convert(xml, o);
            writeOut(cl.getOptionValue("xml-out"), r.xml(), out);
            what = cl.getOptionValue("xml-in");
        } else {
            String dom = domainArg(cl, "convert");
            try (LibvirtOps ops = new LibvirtOps(cfg, out)) {
                r = ops.convert(dom, o);
            }
            what = dom;
        }
        PrintStream info = "-".equals(cl.getOptionValue("xml-out")) ? err : out;
        DomainDisks dd = DomainDisks.parse(r.xml());
        for (String t : r.changed()) {
            DiskSpec s = dd.disks().stream().filter(x -> x.target().equals(t)).findFirst().orElseThrow();
            info.printf("%s: %s (%s) -> vhost-user socket %s, %d queue(s)%s%n", t, s.image(), s.format(), s.socket(), s.queues(),
                    s.serial() != null ? ", serial " + s.serial() : "");
        }
        for (String s : r.skipped()) {
            info.println("skipped " + s);
        }
        for (String w : r.warnings()) {
            info.println("warning: " + w);
        }
        info.println(r.modified() ? what + ": converted " + r.changed().size() + " disk(s)" : what + ": nothing to change");
        return 0;
    }

    private static int revert(String[] args, PrintStream out, PrintStream err) throws Exception {
        CommandLine cl = parse(rewriteOptions(false), args);
        PluginConfig cfg = config(cl);
        RewriteResult r;
        String what;
        if (cl.hasOption("xml-in") || cl.hasOption("xml-out")) {
            offlineCheck(cl);
            r = new DomainXmlRewriter().revert(Files.readString(Path.of(cl.getOptionValue("xml-in"))), disks(cl));
            writeOut(cl.getOptionValue("xml-out"), r.xml(), out);
            what = cl.getOptionValue("xml-in");
        } else {
            String dom = domainArg(cl, "revert");
            try (LibvirtOps ops = new LibvirtOps(cfg, out)) {
                r = ops.revert(dom, disks(cl));
            }
            what = dom;
        }
        PrintStream info = "-".equals(cl.getOptionValue("xml-out")) ? err : out;
        for (String t : r.changed()) {
            info.println(t + ": original disk restored");
        }
        for (String s : r.skipped()) {
            info.println("skipped " + s);
        }
        for (String w : r.warnings()) {
            info.println("warning: " + w);
        }
        info.println(r.modified() ? what + ": reverted " + r.changed().size() + " disk(s)" : what + ": nothing to change");
        return 0;
    }

    private static void offlineCheck(CommandLine cl) throws ParseException {
        if (!cl.hasOption("xml-in") || !cl.hasOption("xml-out")) {
            throw new ParseException("offline mode needs both --xml-in and --xml-out");
        }
        if (!cl.getArgList().isEmpty()) {
            throw new ParseException("offline mode takes no DOMAIN");
        }
    }

    private static void writeOut(String where, String xml, PrintStream out) throws IOException {
        if ("-".equals(where)) {
            out.print(xml);
            out.flush();
        } else {
            Files.writeString(Path.of(where), xml);
        }
    }

    private static int attach(String[] args, PrintStream out, PrintStream err) throws Exception {
        Options o = common();
        o.addOption(Option.builder().longOpt("source").hasArg().argName("PATH").required().desc("image file or block device").build());
        o.addOption(Option.builder().longOpt("target").hasArg().argName("vdX").required().desc("guest disk name").build());
        o.addOption(Option.builder().longOpt("format").hasArg().argName("FMT").desc("raw (default) or qcow2").build());
        o.addOption(Option.builder().longOpt("queues").hasArg().argName("N").build());
        o.addOption(Option.builder().longOpt("workers").hasArg().argName("M").build());
        CommandLine cl = parse(o, args);
        String dom = domainArg(cl, "attach");
        try (LibvirtOps ops = new LibvirtOps(config(cl), out)) {
            DiskSpec s = ops.attach(dom, cl.getOptionValue("target"), cl.getOptionValue("source"), cl.getOptionValue("format", "raw"),
                    intOpt(cl, "queues"), intOpt(cl, "workers"));
            out.printf("%s: attached %s (%s) to %s via %s%n", s.target(), s.image(), s.format(), dom, s.socket());
        }
        return 0;
    }

    private static int detach(String[] args, PrintStream out, PrintStream err) throws Exception {
        Options o = common();
        o.addOption(Option.builder().longOpt("target").hasArg().argName("vdX").required().desc("guest disk name").build());
        o.addOption(Option.builder().longOpt("timeout").hasArg().argName("S").desc("seconds to wait for the guest (default 60)").build());
        CommandLine cl = parse(o, args);
        String dom = domainArg(cl, "detach");
        Integer t = intOpt(cl, "timeout");
        try (LibvirtOps ops = new LibvirtOps(config(cl), out)) {
            ops.detach(dom, cl.getOptionValue("target"), t == null ? 60 : t);
        }
        out.printf("%s: detached from %s, backend stopped%n", cl.getOptionValue("target"), dom);
        return 0;
    }

    private static int status(String[] args, PrintStream out, PrintStream err) throws Exception {
        Options o = common();
        o.addOption(Option.builder().longOpt("json").desc("machine-readable output").build());
        CommandLine cl = parse(o, args);
        PluginConfig cfg = config(cl);
        JsonNode r = new DaemonClient(cfg.daemonSocket()).call(DaemonClient.request("status"));
        if (cl.hasOption("json")) {
            out.println(Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(r.path("backends")));
            return 0;
        }
        out.print(StatusTable.render(r.path("backends")));
        if (!r.path("libvirt_connected").asBoolean(true)) {
            out.println("(the daemon is not connected to libvirt right now)");
        }
        return 0;
    }

    private static int daemon(String[] args) throws Exception {
        CommandLine cl = parse(common(), args);
        PluginConfig cfg = config(cl);
        System.setProperty("vhostblk.log.dir", cfg.logDir().toString());
        return Daemon.run(cfg);
    }

    private static int hook(String[] args, InputStream in, PrintStream err) throws Exception {
        PluginConfig cfg = PluginConfig.load(null);
        return HookMain.run(cfg, args, in, err);
    }

    private static int installHook(String[] args, PrintStream out) throws Exception {
        Options o = common();
        o.addOption(Option.builder().longOpt("hooks-dir").hasArg().argName("DIR").desc("default /etc/libvirt/hooks/qemu.d").build());
        CommandLine cl = parse(o, args);
        Path dir = Path.of(cl.getOptionValue("hooks-dir", "/etc/libvirt/hooks/qemu.d"));
        String home = System.getProperty("vhostblk.home", "/opt/vhostblk");
        Path launcher = Path.of(home, "bin", "vhostblk");
        String config = cl.hasOption("config") ? Path.of(cl.getOptionValue("config")).toAbsolutePath().toString() : "";
        String script;
        try (InputStream s = Main.class.getResourceAsStream("/io/vhostblk/plugin/libvirt-hook.sh")) {
            script = new String(s.readAllBytes(), StandardCharsets.UTF_8)
                    .replace("@LAUNCHER@", launcher.toString()).replace("@CONFIG@", config);
        }
        Files.createDirectories(dir);
        Path hook = dir.resolve("vhostblk");
        boolean same = Files.exists(hook) && Files.readString(hook).equals(script);
        Path tmp = dir.resolve(".vhostblk.tmp");
        Files.writeString(tmp, script);
        Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rwxr-xr-x"));
        Files.move(tmp, hook, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        out.println((same ? "unchanged: " : "installed: ") + hook + " -> " + launcher + " hook");
        if (!same) {
            out.println("restart libvirtd so that it picks the hook up (libvirt scans hooks only at start)");
        }
        return 0;
    }

    static List<String> split(String s) {
        return new ArrayList<>(Arrays.asList(s.split(" ")));
    }
}
