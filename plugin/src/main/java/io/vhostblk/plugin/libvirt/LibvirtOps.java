package io.vhostblk.plugin.libvirt;

import io.vhostblk.plugin.config.PluginConfig;
import io.vhostblk.plugin.daemon.DaemonClient;
import io.vhostblk.plugin.daemon.Json;
import io.vhostblk.plugin.xml.ConvertOptions;
import io.vhostblk.plugin.xml.DiskSpec;
import io.vhostblk.plugin.xml.DomainDisks;
import io.vhostblk.plugin.xml.DomainXmlRewriter;
import io.vhostblk.plugin.xml.RewriteException;
import io.vhostblk.plugin.xml.RewriteResult;
import io.vhostblk.plugin.xml.XmlTemplates;
import org.libvirt.Connect;
import org.libvirt.Domain;
import org.libvirt.LibvirtException;

import java.io.IOException;
import java.io.PrintStream;
import java.util.Set;

/** The CLI's libvirt operations (convert, revert, attach, detach) through libvirt-java. */
public final class LibvirtOps implements AutoCloseable {
    // virDomainXMLFlags / virDomainModificationImpact / virDomainMetadataType
    static final int XML_SECURE = 1;
    static final int XML_INACTIVE = 2;
    static final int AFFECT_LIVE = 1;
    static final int AFFECT_CONFIG = 2;
    static final int METADATA_ELEMENT = 2;

    private final PluginConfig cfg;
    private final Connect conn;
    private final PrintStream out;
    private final DomainXmlRewriter rewriter = new DomainXmlRewriter();

    public LibvirtOps(PluginConfig cfg, PrintStream out) throws LibvirtException {
        this.cfg = cfg;
        this.out = out;
        Connect.setErrorCallback((p, e) -> { });
        this.conn = new Connect(cfg.libvirtUri(), false);
    }

    public Domain lookup(String nameOrUuid) throws LibvirtException {
        try {
            return conn.domainLookupByName(nameOrUuid);
        } catch (LibvirtException e) {
            if (nameOrUuid.matches("[0-9a-fA-F-]{36}")) {
                return conn.domainLookupByUUIDString(nameOrUuid);
            }
            throw e;
        }
    }

    /** Rewrites the persistent definition. Returns the result (nothing defined when unmodified). */
    public RewriteResult convert(String name, ConvertOptions options) throws LibvirtException {
        Domain d = lookup(name);
        if (d.isPersistent() != 1) {
            throw new RewriteException("domain " + name + " is transient: there is no persistent definition to convert");
        }
        // SECURE: keep passwords (VNC/SPICE) in the definition we write back
        String xml = d.getXMLDesc(XML_SECURE | XML_INACTIVE);
        RewriteResult r = rewriter.convert(xml, options);
        if (r.modified()) {
            conn.domainDefineXML(r.xml());
        }
        if (d.isActive() == 1 && r.modified()) {
            out.println("note: domain " + name + " is running: the change applies at its next boot"
                    + " (virsh shutdown/destroy then virsh start; a reboot inside the guest is not enough)");
        }
        return r;
    }

    public RewriteResult revert(String name, Set<String> targets) throws LibvirtException {
        Domain d = lookup(name);
        String xml = d.getXMLDesc(XML_SECURE | XML_INACTIVE);
        RewriteResult r = rewriter.revert(xml, targets);
        if (r.modified()) {
            conn.domainDefineXML(r.xml());
        }
        if (d.isActive() == 1 && r.modified()) {
            out.println("note: domain " + name + " is running: it keeps its vhostblk disks until it is stopped;"
                    + " the original disks are used from its next boot");
        }
        return r;
    }

    /** Hotplug: backend first (through the daemon), then attach-device live (+config when persistent). */
    public DiskSpec attach(String name, String target, String source, String format, Integer queues, Integer workers)
            throws LibvirtException, IOException {
        Domain d = lookup(name);
        if (d.isActive() != 1) {
            throw new RewriteException("domain " + name + " is not running (attach is hotplug; for a stopped domain add the disk"
                    + " with virsh and run vhostblk convert)");
        }
        String live = d.getXMLDesc(XML_SECURE);
        if (!rewriter.hasSharedMemory(live)) {
            throw new RewriteException("domain " + name + " runs without shared memory: vhost-user disks cannot be hotplugged."
                    + " Convert it (vhostblk convert) and restart it first");
        }
        DomainDisks dd = DomainDisks.parse(live);
        if (diskElement(live, target) != null) {
            throw new RewriteException("domain " + name + " already has a disk " + target);
        }
        if (!"raw".equals(format) && !"qcow2".equals(format)) {
            throw new RewriteException("--format must be raw or qcow2");
        }
        if (!source.startsWith("/")) {
            throw new RewriteException("--source must be an absolute path");
        }
        int q = queues != null ? queues : Math.max(1, Math.min(256, d.getInfo().nrVirtCpu));
        String socket = DomainXmlRewriter.socketPath(cfg.socketDir().toString(), dd.name(), dd.uuid(), target);
        String sourceType = java.nio.file.Files.isRegularFile(java.nio.file.Path.of(source)) ? "file" : "block";
        DiskSpec spec = new DiskSpec(target, socket, source, sourceType, format, false, null, null, null, q, workers, null);
        DaemonClient daemon = new DaemonClient(cfg.daemonSocket());
        daemon.call(DaemonClient.request("ensure-disk").put("domain", dd.name()).put("uuid", dd.uuid())
                .set("disk", Json.MAPPER.valueToTree(spec)));
        boolean persistent = d.isPersistent() == 1;
        try {
            d.attachDeviceFlags(rewriter.vhostuserDiskXml(spec, cfg.reconnectSeconds()), AFFECT_LIVE | (persistent ? AFFECT_CONFIG : 0));
        } catch (LibvirtException e) {
            daemon.call(DaemonClient.request("stop-disk").put("domain", dd.name()).put("uuid", dd.uuid()).put("target", target));
            throw e;
        }
        // live: virDomainSetMetadata (the daemon reads it to adopt the backend after a restart);
        // persistent: redefine, which keeps the kept original elements as they are
        d.setMetadata(METADATA_ELEMENT, rewriter.metadataWithDisk(d.getXMLDesc(0), spec), XmlTemplates.PREFIX, XmlTemplates.NS, AFFECT_LIVE);
        if (persistent) {
            conn.domainDefineXML(rewriter.withDiskMetadata(d.getXMLDesc(XML_SECURE | XML_INACTIVE), spec));
        }
        return spec;
    }

    /** Hot-unplug: detach-device live (+config), wait until the guest released it, then stop the backend. */
    public void detach(String name, String target, long timeoutSeconds) throws LibvirtException, IOException {
        Domain d = lookup(name);
        String live = d.getXMLDesc(0);
        DomainDisks dd = DomainDisks.parse(live);
        if (dd.disks().stream().noneMatch(s -> s.target().equals(target))) {
            throw new RewriteException("domain " + name + " has no vhostblk disk " + target);
        }
        boolean persistent = d.isPersistent() == 1;
        String diskXml = diskElement(live, target);
        int flags = AFFECT_LIVE;
        if (persistent && diskElement(d.getXMLDesc(XML_INACTIVE), target) != null) {
            flags |= AFFECT_CONFIG;
        }
        d.detachDeviceFlags(diskXml, flags);
        long deadline = System.nanoTime() + timeoutSeconds * 1_000_000_000L;
        while (diskElement(d.getXMLDesc(0), target) != null) {
            if (System.nanoTime() > deadline) {
                throw new IOException("the guest did not release " + target + " within " + timeoutSeconds
                        + " s (no hotplug support in the guest?); its backend keeps running");
            }
            try {
                Thread.sleep(250);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted");
            }
        }
        new DaemonClient(cfg.daemonSocket()).call(DaemonClient.request("stop-disk").put("domain", dd.name())
                .put("uuid", dd.uuid()).put("target", target));
        String m = rewriter.metadataWithoutDisk(d.getXMLDesc(0), target);
        if (m != null) {
            d.setMetadata(METADATA_ELEMENT, m, XmlTemplates.PREFIX, XmlTemplates.NS, AFFECT_LIVE);
        }
        if (persistent) {
            String inactive = d.getXMLDesc(XML_SECURE | XML_INACTIVE);
            String updated = rewriter.withoutDiskMetadata(inactive, target);
            if (!updated.equals(inactive)) {
                conn.domainDefineXML(updated);
            }
        }
    }

    /** The serialized {@code <disk>} with target {@code target} in {@code domainXml}, or null. */
    static String diskElement(String domainXml, String target) {
        var doc = io.vhostblk.plugin.xml.XmlSupport.parse(domainXml);
        var devices = io.vhostblk.plugin.xml.XmlSupport.child(doc.getDocumentElement(), "devices");
        if (devices == null) {
            return null;
        }
        for (var disk : io.vhostblk.plugin.xml.XmlSupport.children(devices, "disk")) {
            if (target.equals(io.vhostblk.plugin.xml.XmlSupport.attr(io.vhostblk.plugin.xml.XmlSupport.child(disk, "target"), "dev"))) {
                return io.vhostblk.plugin.xml.XmlSupport.serialize(disk);
            }
        }
        return null;
    }

    @Override
    public void close() {
        try {
            conn.close();
        } catch (LibvirtException ignored) {
            // exiting
        }
    }
}
