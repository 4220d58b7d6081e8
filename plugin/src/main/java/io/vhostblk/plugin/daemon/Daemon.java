package io.vhostblk.plugin.daemon;

import io.vhostblk.plugin.config.PluginConfig;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

import java.time.Duration;
import java.util.concurrent.CountDownLatch;

/**
 * {@code vhostblk daemon}: the host agent. Serves the hook and CLI on run.dir/daemon.sock,
 * supervises backends and follows libvirt. Stopping the daemon leaves backends running (running
 * guests keep their disks); the next daemon adopts them.
 */
public final class Daemon {
    private static final Logger LOG = LogManager.getLogger(Daemon.class);

    private Daemon() {}

    public static int run(PluginConfig cfg) throws Exception {
        LOG.info("vhostblk daemon pid {} starting (config {}, libvirt {}, run dir {}, logs {})", ProcessHandle.current().pid(),
                cfg.file(), cfg.libvirtUri(), cfg.runDir(), cfg.logDir());
        Supervisor supervisor = new Supervisor(cfg);
        supervisor.features();
        LibvirtMonitor monitor = new LibvirtMonitor(cfg.libvirtUri(), supervisor);
        ControlServer server = new ControlServer(cfg.daemonSocket(), supervisor, monitor::connected);
        CountDownLatch done = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            LOG.info("vhostblk daemon stopping; {} backend(s) keep running", supervisor.all().size());
            try {
                server.close();
            } catch (Exception e) {
                LOG.warn("closing control socket: {}", e.toString());
            }
            monitor.close();
            supervisor.close();
            done.countDown();
            org.apache.logging.log4j.LogManager.shutdown();
        }, "shutdown"));
        server.start();
        monitor.start();
        supervisor.schedule(supervisor::rotateRunningLogs, Duration.ofMinutes(1));
        done.await();
        return 0;
    }
}
