package io.vhostblk.plugin.daemon;

import io.vhostblk.plugin.xml.DomainDisks;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;
import org.libvirt.Connect;
import org.libvirt.Domain;
import org.libvirt.Library;
import org.libvirt.LibvirtException;
import org.libvirt.event.DomainEvent;
import org.libvirt.event.DomainEventType;
import org.libvirt.event.LifecycleListener;
import org.libvirt.event.StoppedDetail;

import java.time.Duration;
import java.time.Instant;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * The daemon's view of libvirt: the libvirt-java event loop (initialised before connecting,
 * pumped by a dedicated thread), a connection with keepalive that is re-opened when libvirtd
 * restarts, lifecycle events, and a periodic reconcile that adopts backends of running domains
 * and cleans up what a missed hook left behind.
 */
public final class LibvirtMonitor implements AutoCloseable {
    private static final Logger LOG = LogManager.getLogger(LibvirtMonitor.class);
    private static final int VIR_CONNECT_LIST_DOMAINS_ACTIVE = 1;

    private final String uri;
    private final Supervisor supervisor;
    private final ExecutorService events = Executors.newSingleThreadExecutor(r -> {
        Thread t = new Thread(r, "libvirt-events");
        t.setDaemon(true);
        return t;
    });
    private final Object closedSignal = new Object();
    private volatile Connect conn;
    private volatile boolean connected;
    private volatile boolean running = true;
    private Thread loopThread;
    private Thread connectThread;
    private final LifecycleListener listener = this::onLifecycle;

    public LibvirtMonitor(String uri, Supervisor supervisor) {
        this.uri = uri;
        this.supervisor = supervisor;
    }

    public boolean connected() {
        return connected;
    }

    public void start() throws LibvirtException {
        // silence libvirt's default "libvirt: ... error" printing; errors arrive as exceptions
        Connect.setErrorCallback((p, e) -> { });
        Library.initEventLoop();
        loopThread = Thread.ofPlatform().name("libvirt-event-loop").daemon(true).start(() -> {
            try {
                Library.runEventLoop();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } catch (LibvirtException e) {
                LOG.error("libvirt event loop ended", e);
            }
        });
        connectThread = Thread.ofPlatform().name("libvirt-connect").daemon(true).start(this::connectLoop);
    }

    private void connectLoop() {
        long backoffMs = 1000;
        while (running) {
            try {
                Connect c = new Connect(uri, false);
                c.setKeepAlive(5, 3);
                c.registerCloseListener((cc, reason) -> {
                    LOG.warn("libvirt connection closed ({}); reconnecting", reason);
                    connected = false;
                    synchronized (closedSignal) {
                        closedSignal.notifyAll();
                    }
                });
                c.addLifecycleListener(listener);
                conn = c;
                connected = true;
                backoffMs = 1000;
                LOG.info("connected to {} (libvirt {})", uri, c.getLibVirVersion());
                events.submit(this::reconcileQuietly);
                // reconcile now and then: cleans up after missed hooks or events
                while (running && connected) {
                    synchronized (closedSignal) {
                        closedSignal.wait(30_000);
                    }
                    if (running && connected) {
                        if (!isAlive(c)) {
                            LOG.warn("libvirt connection is dead; reconnecting");
                            connected = false;
                            break;
                        }
                        events.submit(this::reconcileQuietly);
                    }
                }
                closeQuietly(c);
            } catch (LibvirtException e) {
                connected = false;
                LOG.warn("cannot connect to {}: {} (retrying in {} s)", uri, e.getMessage(), backoffMs / 1000);
                sleep(backoffMs);
                backoffMs = Math.min(30_000, backoffMs * 2);
            } catch (InterruptedException e) {
                return;
            }
        }
    }

    private static boolean isAlive(Connect c) {
        try {
            return c.isAlive();
        } catch (LibvirtException e) {
            return false;
        }
    }

    private void closeQuietly(Connect c) {
        try {
            c.removeLifecycleListener(listener);
        } catch (LibvirtException | RuntimeException ignored) {
            // connection already gone
        }
        try {
            c.unregisterCloseListener();
        } catch (LibvirtException | RuntimeException ignored) {
            // gone
        }
        try {
            c.close();
        } catch (LibvirtException | RuntimeException ignored) {
            // gone
        }
    }

    /** Runs on the event loop thread: record the facts and hand the work to another thread. */
    private int onLifecycle(Domain dom, DomainEvent ev) {
        try {
            String name = dom.getName();
            String uuid = dom.getUUIDString();
            DomainEventType type = ev.getType();
            Object detail = ev.getDetail();
            events.submit(() -> handle(new DomainRef(name, uuid), type, detail));
        } catch (LibvirtException e) {
            LOG.warn("lifecycle event for an unknown domain: {}", e.getMessage());
        }
        return 0;
    }

    private void handle(DomainRef d, DomainEventType type, Object detail) {
        LOG.info("event {} {} ({})", d, type, detail);
        try {
            switch (type) {
                case STARTED, RESUMED -> {
                    Domain dom = conn.domainLookupByUUIDString(d.uuid());
                    DomainDisks dd = DomainDisks.parse(dom.getXMLDesc(0));
                    if (!dd.disks().isEmpty()) {
                        supervisor.adopt(d, dd.disks()); // starts what a missed hook did not
                    }
                }
                case STOPPED, CRASHED -> {
                    if (supervisor.ofDomain(d).isEmpty()) {
                        return;
                    }
                    if (isActive(d)) {
                        return; // started again already (or crashed and kept): its backends are needed
                    }
                    String reason = detail instanceof StoppedDetail sd && sd == StoppedDetail.MIGRATED ? "migrated"
                            : "event " + type + " " + detail;
                    supervisor.release(d, reason);
                }
                default -> {
                    // nothing to do
                }
            }
        } catch (LibvirtException | RuntimeException e) {
            LOG.warn("handling {} of {}: {}", type, d, e.getMessage());
        }
    }

    private boolean isActive(DomainRef d) throws LibvirtException {
        try {
            Domain dom = conn.domainLookupByUUIDString(d.uuid());
            return dom.isActive() == 1;
        } catch (LibvirtException e) {
            if (e.getError() != null && e.getError().getCode() == org.libvirt.Error.ErrorNumber.VIR_ERR_NO_DOMAIN) {
                return false; // a transient domain that is gone
            }
            throw e;
        }
    }

    private void reconcileQuietly() {
        try {
            reconcile();
        } catch (LibvirtException | RuntimeException e) {
            LOG.warn("reconcile failed: {}", e.getMessage());
        }
    }

    /**
     * Adopts (or starts) backends for every running domain with vhostblk disks, stops backends of
     * domains that are not running, and kills orphans recorded in state files.
     */
    public void reconcile() throws LibvirtException {
        Connect c = conn;
        if (c == null || !connected) {
            return;
        }
        Set<String> active = new HashSet<>();
        for (Domain dom : c.listAllDomains(VIR_CONNECT_LIST_DOMAINS_ACTIVE)) {
            DomainRef d = new DomainRef(dom.getName(), dom.getUUIDString());
            active.add(d.key());
            DomainDisks dd = DomainDisks.parse(dom.getXMLDesc(0));
            if (!dd.disks().isEmpty()) {
                supervisor.adopt(d, dd.disks());
            }
        }
        for (DomainRef d : supervisor.domains()) {
            if (!active.contains(d.key())) {
                boolean recent = supervisor.ofDomain(d).stream().anyMatch(b -> {
                    synchronized (b) {
                        return b.startedAt != null && Duration.between(b.startedAt, Instant.now()).toSeconds() < 20;
                    }
                });
                if (!recent) {
                    LOG.warn("{} is not running but has backends: stopping them (missed release hook?)", d);
                    supervisor.release(d, "reconcile: domain not running");
                }
            }
        }
        supervisor.reapOrphans(active);
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    @Override
    public void close() {
        running = false;
        connected = false;
        synchronized (closedSignal) {
            closedSignal.notifyAll();
        }
        events.shutdownNow();
        try {
            events.awaitTermination(2, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        Connect c = conn;
        if (c != null) {
            closeQuietly(c);
        }
        try {
            Library.stopEventLoop();
        } catch (LibvirtException | RuntimeException ignored) {
            // exiting anyway
        }
    }
}
