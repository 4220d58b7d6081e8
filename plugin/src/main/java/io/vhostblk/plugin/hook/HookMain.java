package io.vhostblk.plugin.hook;

import io.vhostblk.plugin.config.PluginConfig;
import io.vhostblk.plugin.daemon.DaemonClient;
import io.vhostblk.plugin.xml.DomainDisks;
import io.vhostblk.plugin.xml.RewriteException;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

/**
 * The libvirt QEMU hook ({@code /etc/libvirt/hooks/qemu.d/vhostblk DOMAIN OP SUBOP EXTRA}, domain
 * XML on stdin). Never calls libvirt (that would deadlock libvirtd): it only talks to the
 * vhostblk daemon.
 * <ul>
 * <li>{@code prepare begin}: every vhostblk disk gets a listening backend before QEMU starts; if
 * that fails (or the daemon is down) the hook fails and libvirt does not start the domain.</li>
 * <li>{@code release end}: the domain's backends are stopped (after a completed outgoing
 * migration only once the source QEMU is gone).</li>
 * <li>{@code reconnect begin} (libvirtd restarted): backends are adopted or restarted; never
 * fails, because a failing reconnect hook makes libvirt kill the guest.</li>
 * </ul>
 */
public final class HookMain {
    private HookMain() {}

    public static int run(PluginConfig cfg, String[] args, InputStream stdin, PrintStream err) throws IOException {
        if (args.length < 3) {
            err.println("vhostblk hook: usage: hook DOMAIN OPERATION SUB-OPERATION [EXTRA] < domain.xml");
            return 2;
        }
        String domain = args[0];
        String op = args[1] + "/" + args[2];
        String extra = args.length > 3 ? args[3] : "-";
        if (!op.equals("prepare/begin") && !op.equals("release/end") && !op.equals("reconnect/begin")) {
            return 0;
        }
        String xml = new String(stdin.readAllBytes(), StandardCharsets.UTF_8);
        DomainDisks dd;
        try {
            dd = DomainDisks.parse(xml);
        } catch (RewriteException e) {
            err.println("vhostblk hook: cannot read the XML of domain " + domain + ": " + e.getMessage());
            return op.equals("prepare/begin") ? 1 : 0;
        }
        if (dd.disks().isEmpty() && !op.equals("release/end")) {
            return 0;
        }
        DaemonClient client = new DaemonClient(cfg.daemonSocket());
        // libvirt waits for us with the domain locked: never hang forever on a stuck daemon
        long limit = cfg.backendStartTimeout().toSeconds() * 2 + 60;
        Thread.ofPlatform().daemon(true).name("hook-watchdog").start(() -> {
            try {
                Thread.sleep(limit * 1000);
            } catch (InterruptedException e) {
                return;
            }
            err.println("vhostblk hook (" + op + "): no answer from the vhostblk daemon within " + limit + " s");
            err.flush();
            Runtime.getRuntime().halt(op.equals("prepare/begin") ? 1 : 0);
        });
        try {
            switch (op) {
                case "prepare/begin" -> client.call(DaemonClient.request("prepare").put("xml", xml));
                case "reconnect/begin" -> client.call(DaemonClient.request("reconnect").put("xml", xml));
                default -> client.call(DaemonClient.request("release").put("xml", xml).put("reason", extra));
            }
            return 0;
        } catch (DaemonClient.UnavailableException e) {
            if (op.equals("prepare/begin")) {
                err.println("vhostblk: domain " + domain + " has vhost-user disks served by vhostblk, but " + e.getMessage()
                        + ". Refusing to start the domain.");
                return 1;
            }
            err.println("vhostblk hook (" + op + "): " + e.getMessage());
            return 0;
        } catch (DaemonClient.DaemonException e) {
            if (op.equals("prepare/begin")) {
                err.println("vhostblk: cannot start the disk backends of domain " + domain + ": " + e.getMessage());
                return 1;
            }
            err.println("vhostblk hook (" + op + "): " + e.getMessage());
            return 0;
        }
    }

}
