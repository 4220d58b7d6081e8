package io.vhostblk.plugin.xml;

import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.Node;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * Rewrites a libvirt domain XML so that chosen virtio disks are served by vhostblk backends over
 * vhost-user-blk, and back. Pure function of its input: no libvirt, no files; thread-safe. This is
 * the Java API for host agents (CloudStack's XML transformer hook, ...): XML string in, XML string
 * out.
 *
 * <p>{@link #convert}: each chosen {@code <disk device='disk'>} with a file or block source (raw
 * or qcow2) on the virtio bus becomes a {@code <disk type='vhostuser'>} on a socket under
 * {@link ConvertOptions#socketDir()} with {@code <reconnect enabled='yes'/>}; its boot order, PCI
 * address and alias stay. Options libvirt rejects on vhostuser disks are removed and carried to
 * the backend (serial, readonly, cache, discard) or dropped with a warning (iotune, io, ...). The
 * domain gets shared guest memory. The original elements and the backend settings are kept in
 * the domain's {@code <metadata>} ({@link XmlTemplates#NS}). Converting twice changes nothing.
 *
 * <p>{@link #revert}: puts the original disk elements back exactly and undoes the memory change
 * once no converted disk remains.
 */
public final class DomainXmlRewriter {
    /** virtio-blk's serial (GET_ID) is 20 bytes. */
    public static final int MAX_SERIAL = 20;
    private static final int MAX_SOCKET_PATH = 107;
    private static final Pattern SAFE_NAME = Pattern.compile("[A-Za-z0-9._+-]{1,64}");
    private static final Pattern SAFE_TARGET = Pattern.compile("[a-z]{2,3}[a-z0-9]{1,8}");
    /** driver attributes that are virtio options, valid on a vhostuser disk too */
    private static final List<String> KEPT_DRIVER_ATTRS = List.of("iommu", "ats", "packed", "page_per_vq", "queue_size");
    /** driver attributes libvirt rejects on vhostuser disks and the backend has no use for */
    private static final List<String> DROPPED_DRIVER_ATTRS = List.of("io", "ioeventfd", "event_idx", "copy_on_read",
            "detect_zeroes", "error_policy", "rerror_policy", "iothread");
    /** disk children copied into the vhostuser disk */
    private static final Set<String> KEPT_CHILDREN = Set.of("boot", "address", "alias");
    /** disk children replaced by the template or carried to the backend */
    private static final Set<String> CARRIED_CHILDREN = Set.of("driver", "source", "target", "serial", "readonly",
            "backingStore");
    private static final Set<String> REFUSED_CHILDREN = Set.of("encryption", "shareable", "transient", "auth", "mirror");

    /** Converts with {@code options}; throws {@link RewriteException} if an explicitly chosen disk cannot be converted. */
    public RewriteResult convert(String domainXml, ConvertOptions options) {
        Document doc = XmlSupport.parse(domainXml);
        Element domain = domainElement(doc);
        String name = XmlSupport.text(XmlSupport.child(domain, "name"));
        String uuid = XmlSupport.text(XmlSupport.child(domain, "uuid"));
        Element devices = XmlSupport.child(domain, "devices");
        List<String> changed = new ArrayList<>();
        List<String> skipped = new ArrayList<>();
        List<String> warnings = new ArrayList<>();
        Set<String> wanted = new LinkedHashSet<>(options.targets());
        Element meta = VhostblkMetadata.find(domain);
        Set<String> seen = new LinkedHashSet<>();
        List<Element> disks = devices == null ? List.of() : XmlSupport.children(devices, "disk");
        for (Element disk : disks) {
            String target = XmlSupport.attr(XmlSupport.child(disk, "target"), "dev");
            if (target == null) {
                continue;
            }
            seen.add(target);
            boolean chosen = wanted.isEmpty() || wanted.contains(target);
            if ("vhostuser".equals(disk.getAttribute("type"))) {
                if (meta != null && VhostblkMetadata.diskElement(meta, target) != null) {
                    if (chosen) {
                        skipped.add(target + ": already served by vhostblk");
                    }
                } else if (!wanted.isEmpty() && wanted.contains(target)) {
                    throw new RewriteException("disk " + target + " is a vhostuser disk not managed by vhostblk");
                } else {
                    skipped.add(target + ": vhostuser disk of another backend, left alone");
                }
                continue;
            }
            if (!chosen) {
                continue;
            }
            String why = ineligible(disk);
            if (why != null) {
                if (!wanted.isEmpty()) {
                    throw new RewriteException("disk " + target + " cannot be converted: " + why);
                }
                skipped.add(target + ": " + why);
                continue;
            }
            if (meta == null) {
                meta = createMetadata(domain);
            }
            DiskSpec spec = specFor(disk, target, name, uuid, domain, options, warnings);
            Element vu = vhostuserDisk(doc, disk, spec, options.reconnectSeconds());
            Element entry = XmlTemplates.instantiate(doc, XmlTemplates.METADATA_DISK, VhostblkMetadata.values(spec));
            dropNsDecl(entry);
            Element original = XmlTemplates.instantiate(doc, XmlTemplates.METADATA_ORIGINAL, Map.of());
            dropNsDecl(original);
            XmlSupport.insertIndented(meta, entry, null);
            XmlSupport.replaceIndented(disk, vu);
            XmlSupport.insertIndented(entry, original, null);
            XmlSupport.insertIndented(original, disk, null);
            changed.add(target);
        }
        for (String t : wanted) {
            if (!seen.contains(t)) {
                throw new RewriteException("domain " + name + " has no disk with target " + t);
            }
        }
        boolean memoryChanged = false;
        if (meta != null && !VhostblkMetadata.diskElements(meta).isEmpty()) {
            memoryChanged = ensureSharedMemory(domain, meta, warnings);
        }
        if (changed.isEmpty() && !memoryChanged) {
            return new RewriteResult(domainXml, false, changed, skipped, warnings);
        }
        return new RewriteResult(XmlSupport.serialize(doc), true, changed, skipped, warnings);
    }

    /** Reverts the given targets (empty = all vhostblk disks). */
    public RewriteResult revert(String domainXml, Set<String> targets) {
        Document doc = XmlSupport.parse(domainXml);
        Element domain = domainElement(doc);
        List<String> changed = new ArrayList<>();
        List<String> skipped = new ArrayList<>();
        List<String> warnings = new ArrayList<>();
        Element meta = VhostblkMetadata.find(domain);
        if (meta == null) {
            for (String t : targets) {
                skipped.add(t + ": not a vhostblk disk");
            }
            return new RewriteResult(domainXml, false, changed, skipped, warnings);
        }
        Set<String> known = new LinkedHashSet<>();
        Element devices = XmlSupport.child(domain, "devices");
        for (Element entry : VhostblkMetadata.diskElements(meta)) {
            String target = entry.getAttribute("target");
            known.add(target);
            if (!targets.isEmpty() && !targets.contains(target)) {
                continue;
            }
            Element disk = devices == null ? null : findDisk(devices, target);
            if (disk == null) {
                warnings.add(target + ": no such disk in the domain any more; dropping its vhostblk metadata");
            } else if (!"vhostuser".equals(disk.getAttribute("type"))) {
                warnings.add(target + ": disk is no longer a vhostuser disk; left as it is, metadata dropped");
            } else {
                Element restored = originalDisk(doc, entry);
                XmlSupport.replaceIndented(disk, restored);
                changed.add(target);
            }
            XmlSupport.removeIndented(entry);
        }
        for (String t : targets) {
            if (!known.contains(t)) {
                skipped.add(t + ": not a vhostblk disk");
            }
        }
        if (VhostblkMetadata.diskElements(meta).isEmpty()) {
            restoreMemory(domain, meta, warnings);
            Element md = (Element) meta.getParentNode();
            XmlSupport.removeIndented(meta);
            if (XmlSupport.elementChildren(md).isEmpty()) {
                XmlSupport.removeIndented(md);
            }
        }
        return new RewriteResult(XmlSupport.serialize(doc), true, changed, skipped, warnings);
    }

    /** The {@code <disk type='vhostuser'>} element for {@code spec}, as XML text (for attach-device). */
    public String vhostuserDiskXml(DiskSpec spec, int reconnectSeconds) {
        Document doc = XmlSupport.parse("<disks/>");
        Element e = vhostuserDisk(doc, null, spec, reconnectSeconds);
        XmlSupport.reindent(e, "");
        return XmlSupport.serialize(e);
    }

    /**
     * The vhostblk metadata element of {@code domainXml} with {@code spec} added (replacing an
     * entry for the same target), as XML text for {@code virDomainSetMetadata}.
     */
    public String metadataWithDisk(String domainXml, DiskSpec spec) {
        Document doc = XmlSupport.parse(domainXml);
        Element domain = domainElement(doc);
        Element meta = VhostblkMetadata.find(domain);
        if (meta == null) {
            meta = createMetadata(domain);
        }
        Element old = VhostblkMetadata.diskElement(meta, spec.target());
        if (old != null) {
            XmlSupport.removeIndented(old);
        }
        Element entry = XmlTemplates.instantiate(doc, XmlTemplates.METADATA_DISK, VhostblkMetadata.values(spec));
        dropNsDecl(entry);
        XmlSupport.insertIndented(meta, entry, null);
        return setMetadataForm(meta);
    }

    /**
     * Our metadata element as {@code virDomainSetMetadata(VIR_DOMAIN_METADATA_ELEMENT, xml, "vhostblk", NS)}
     * wants it: libvirt puts the namespace on the root element itself (and fails if the root
     * already declares the prefix), so the root goes without namespace and each child declares it.
     */
    static String setMetadataForm(Element meta) {
        Document out = XmlSupport.parse("<" + XmlTemplates.PREFIX + "/>");
        Element root = out.getDocumentElement();
        var attrs = meta.getAttributes();
        for (int i = 0; i < attrs.getLength(); i++) {
            Node a = attrs.item(i);
            if (!"http://www.w3.org/2000/xmlns/".equals(a.getNamespaceURI())) {
                root.setAttribute(a.getNodeName(), a.getNodeValue());
            }
        }
        for (Element c : XmlSupport.elementChildren(meta)) {
            Element copy = (Element) out.importNode(c, true);
            copy.setAttributeNS("http://www.w3.org/2000/xmlns/", "xmlns:" + XmlTemplates.PREFIX, XmlTemplates.NS);
            root.appendChild(copy);
        }
        XmlSupport.reindent(root, "");
        return XmlSupport.serialize(root);
    }

    /** {@code domainXml} with a metadata entry for {@code spec} (for redefining the persistent definition after a hotplug). */
    public String withDiskMetadata(String domainXml, DiskSpec spec) {
        Document doc = XmlSupport.parse(domainXml);
        Element domain = domainElement(doc);
        Element meta = VhostblkMetadata.find(domain);
        if (meta == null) {
            meta = createMetadata(domain);
        }
        Element old = VhostblkMetadata.diskElement(meta, spec.target());
        if (old != null) {
            XmlSupport.removeIndented(old);
        }
        Element entry = XmlTemplates.instantiate(doc, XmlTemplates.METADATA_DISK, VhostblkMetadata.values(spec));
        dropNsDecl(entry);
        XmlSupport.insertIndented(meta, entry, null);
        return XmlSupport.serialize(doc);
    }

    /** {@code domainXml} without the metadata entry of {@code target} (after a hot-unplug). */
    public String withoutDiskMetadata(String domainXml, String target) {
        Document doc = XmlSupport.parse(domainXml);
        Element meta = VhostblkMetadata.find(domainElement(doc));
        Element old = meta == null ? null : VhostblkMetadata.diskElement(meta, target);
        if (old == null) {
            return domainXml;
        }
        XmlSupport.removeIndented(old);
        return XmlSupport.serialize(doc);
    }

    /** The vhostblk metadata element without the entry for {@code target}; null if nothing is left. */
    public String metadataWithoutDisk(String domainXml, String target) {
        Document doc = XmlSupport.parse(domainXml);
        Element meta = VhostblkMetadata.find(domainElement(doc));
        if (meta == null) {
            return null;
        }
        Element old = VhostblkMetadata.diskElement(meta, target);
        if (old != null) {
            XmlSupport.removeIndented(old);
        }
        return setMetadataForm(meta);
    }

    /** Whether the domain's guest RAM can be shared with a vhost-user backend. */
    public boolean hasSharedMemory(String domainXml) {
        Element domain = domainElement(XmlSupport.parse(domainXml));
        List<Element> cells = numaCells(domain);
        Element mb = XmlSupport.child(domain, "memoryBacking");
        if (!cells.isEmpty()) {
            for (Element c : cells) {
                if (!"shared".equals(c.getAttribute("memAccess"))) {
                    return false;
                }
            }
            return mb != null && fdBacked(mb);
        }
        return mb != null && "shared".equals(XmlSupport.attr(XmlSupport.child(mb, "access"), "mode")) && fdBacked(mb);
    }

    /**
     * The socket path for a disk: {@code DIR/NAME-TARGET.sock}, or {@code DIR/UUID-TARGET.sock}
     * when the name has unusual characters or the path would be too long for a UNIX socket.
     */
    public static String socketPath(String socketDir, String domainName, String uuid, String target) {
        if (!SAFE_TARGET.matcher(target).matches()) {
            throw new RewriteException("unusual disk target '" + target + "'");
        }
        String dir = socketDir.endsWith("/") ? socketDir.substring(0, socketDir.length() - 1) : socketDir;
        if (domainName != null && SAFE_NAME.matcher(domainName).matches()) {
            String p = dir + "/" + domainName + "-" + target + ".sock";
            if (p.getBytes(StandardCharsets.UTF_8).length <= MAX_SOCKET_PATH) {
                return p;
            }
        }
        if (uuid != null && uuid.matches("[0-9a-fA-F-]{32,36}")) {
            String p = dir + "/" + uuid.toLowerCase() + "-" + target + ".sock";
            if (p.length() <= MAX_SOCKET_PATH) {
                return p;
            }
        }
        throw new RewriteException("cannot make a socket path under " + socketDir + " for domain " + domainName
                + " disk " + target + " (name unusual and no uuid, or directory too long)");
    }

    // ---- convert internals ---------------------------------------------------------------

    private static Element domainElement(Document doc) {
        Element root = doc.getDocumentElement();
        if (!"domain".equals(XmlSupport.localName(root)) || root.getNamespaceURI() != null) {
            throw new RewriteException("not a libvirt domain XML (root element <" + root.getTagName() + ">)");
        }
        return root;
    }

    private static Element findDisk(Element devices, String target) {
        for (Element d : XmlSupport.children(devices, "disk")) {
            if (target.equals(XmlSupport.attr(XmlSupport.child(d, "target"), "dev"))) {
                return d;
            }
        }
        return null;
    }

    /** Why this disk cannot become a vhostuser disk, or null if it can. */
    static String ineligible(Element disk) {
        String device = disk.hasAttribute("device") ? disk.getAttribute("device") : "disk";
        if (!"disk".equals(device)) {
            return "device='" + device + "' (only device='disk' can be vhost-user-blk)";
        }
        String type = disk.getAttribute("type");
        if (!"file".equals(type) && !"block".equals(type)) {
            return "type='" + type + "' (only file and block sources)";
        }
        Element target = XmlSupport.child(disk, "target");
        String bus = XmlSupport.attr(target, "bus");
        if (!"virtio".equals(bus)) {
            return "bus='" + bus + "' (libvirt supports vhostuser disks on the virtio bus only)";
        }
        String format = format(disk);
        if (!"raw".equals(format) && !"qcow2".equals(format)) {
            return "format '" + format + "' (raw and qcow2 only)";
        }
        Element source = XmlSupport.child(disk, "source");
        String path = source == null ? null : XmlSupport.attr(source, "file".equals(type) ? "file" : "dev");
        if (path == null || path.isEmpty()) {
            return "no source path";
        }
        if (!path.startsWith("/")) {
            return "source path is not absolute";
        }
        for (Element c : XmlSupport.elementChildren(disk)) {
            String n = XmlSupport.localName(c);
            if (REFUSED_CHILDREN.contains(n)) {
                return "<" + n + "> cannot be carried over to a vhostuser disk";
            }
        }
        return null;
    }

    private static String format(Element disk) {
        String f = XmlSupport.attr(XmlSupport.child(disk, "driver"), "type");
        return f == null ? "raw" : f; // libvirt does not probe: no type means raw
    }

    private static DiskSpec specFor(Element disk, String target, String name, String uuid, Element domain,
                                    ConvertOptions o, List<String> warnings) {
        String type = disk.getAttribute("type");
        Element driver = XmlSupport.child(disk, "driver");
        String image = XmlSupport.attr(XmlSupport.child(disk, "source"), "file".equals(type) ? "file" : "dev");
        String serial = XmlSupport.text(XmlSupport.child(disk, "serial"));
        if (serial != null && serial.isEmpty()) {
            serial = null;
        }
        if (serial != null && serial.getBytes(StandardCharsets.UTF_8).length > MAX_SERIAL) {
            String cut = truncateUtf8(serial, MAX_SERIAL);
            warnings.add(target + ": serial '" + serial + "' is longer than virtio-blk's 20 bytes; the guest sees '"
                    + cut + "' (as with QEMU's own virtio-blk)");
            serial = cut;
        }
        String cache = backendCache(XmlSupport.attr(driver, "cache"), target, warnings);
        String discard = XmlSupport.attr(driver, "discard");
        Integer queues = o.queues();
        if (queues == null) {
            String q = XmlSupport.attr(driver, "queues");
            if (q != null && q.matches("\\d+") && Integer.parseInt(q) >= 1) {
                queues = Math.min(256, Integer.parseInt(q));
            } else {
                queues = Math.max(1, Math.min(256, vcpus(domain)));
            }
        }
        for (String a : DROPPED_DRIVER_ATTRS) {
            if (driver != null && driver.hasAttribute(a)) {
                warnings.add(target + ": driver " + a + "='" + driver.getAttribute(a)
                        + "' is not supported on vhostuser disks and was dropped (kept for revert)");
            }
        }
        if (driver != null && XmlSupport.child(driver, "metadata_cache") != null) {
            warnings.add(target + ": <metadata_cache> dropped (kept for revert)");
        }
        for (Element c : XmlSupport.elementChildren(disk)) {
            String n = XmlSupport.localName(c);
            if (!KEPT_CHILDREN.contains(n) && !CARRIED_CHILDREN.contains(n)) {
                warnings.add(target + ": <" + n + "> is not supported on vhostuser disks"
                        + ("iotune".equals(n) ? " and is not enforced by the backend" : "") + "; dropped (kept for revert)");
            }
        }
        String socket = socketPath(o.socketDir(), name, uuid, target);
        return new DiskSpec(target, socket, image, type, format(disk), XmlSupport.child(disk, "readonly") != null,
                serial, cache, discard, queues, o.workers(), o.pollUs());
    }

    /** libvirt cache mode -> backend --cache (none: O_DIRECT; writeback: page cache). */
    private static String backendCache(String mode, String target, List<String> warnings) {
        if (mode == null || "default".equals(mode)) {
            return null;
        }
        return switch (mode) {
            case "none", "directsync" -> "none";
            case "writeback" -> "writeback";
            case "writethrough", "unsafe" -> {
                warnings.add(target + ": cache='" + mode + "' is served as the backend's writeback mode (flushes are honoured)");
                yield "writeback";
            }
            default -> {
                warnings.add(target + ": unknown cache='" + mode + "', backend default used");
                yield null;
            }
        };
    }

    private static int vcpus(Element domain) {
        Element v = XmlSupport.child(domain, "vcpu");
        if (v == null) {
            return 1;
        }
        String s = v.hasAttribute("current") ? v.getAttribute("current") : v.getTextContent().trim();
        try {
            return Integer.parseInt(s);
        } catch (NumberFormatException e) {
            return 1;
        }
    }

    private static String truncateUtf8(String s, int maxBytes) {
        StringBuilder sb = new StringBuilder();
        int bytes = 0;
        for (int i = 0; i < s.length(); ) {
            int cp = s.codePointAt(i);
            int n = new String(Character.toChars(cp)).getBytes(StandardCharsets.UTF_8).length;
            if (bytes + n > maxBytes) {
                break;
            }
            sb.appendCodePoint(cp);
            bytes += n;
            i += Character.charCount(cp);
        }
        return sb.toString();
    }

    private static Element vhostuserDisk(Document doc, Element original, DiskSpec spec, int reconnectSeconds) {
        Map<String, String> v = new LinkedHashMap<>();
        v.put("queues", Integer.toString(spec.queues()));
        v.put("socket", spec.socket());
        v.put("reconnectSeconds", Integer.toString(reconnectSeconds));
        v.put("target", spec.target());
        Element vu = XmlTemplates.instantiate(doc, XmlTemplates.VHOSTUSER_DISK, v);
        if (original != null) {
            Element od = XmlSupport.child(original, "driver");
            Element nd = XmlSupport.child(vu, "driver");
            for (String a : KEPT_DRIVER_ATTRS) {
                if (od != null && od.hasAttribute(a)) {
                    nd.setAttribute(a, od.getAttribute(a));
                }
            }
            for (Element c : XmlSupport.elementChildren(original)) {
                if (KEPT_CHILDREN.contains(XmlSupport.localName(c))) {
                    vu.appendChild(c.cloneNode(true));
                }
            }
        }
        return vu;
    }

    private static Element createMetadata(Element domain) {
        Document doc = domain.getOwnerDocument();
        Element md = XmlSupport.child(domain, "metadata");
        if (md == null) {
            md = doc.createElement("metadata");
            Node before = null;
            for (String after : List.of("description", "title", "genid", "uuid", "name")) {
                Element e = XmlSupport.child(domain, after);
                if (e != null) {
                    before = nextElementSibling(e);
                    break;
                }
            }
            XmlSupport.insertIndented(domain, md, before);
        }
        Element meta = XmlTemplates.instantiate(doc, XmlTemplates.METADATA, Map.of("memoryBacking", "unchanged"));
        XmlSupport.insertIndented(md, meta, null);
        return meta;
    }

    private static Node nextElementSibling(Element e) {
        for (Node n = e.getNextSibling(); n != null; n = n.getNextSibling()) {
            if (n instanceof Element) {
                return n;
            }
        }
        return null;
    }

    private static void dropNsDecl(Element e) {
        e.removeAttributeNS("http://www.w3.org/2000/xmlns/", XmlTemplates.PREFIX);
    }

    // ---- memory ---------------------------------------------------------------------------

    private static List<Element> numaCells(Element domain) {
        Element cpu = XmlSupport.child(domain, "cpu");
        Element numa = cpu == null ? null : XmlSupport.child(cpu, "numa");
        return numa == null ? List.of() : XmlSupport.children(numa, "cell");
    }

    /** Guest RAM that can be handed to another process as a file descriptor. */
    private static boolean fdBacked(Element mb) {
        if (XmlSupport.child(mb, "hugepages") != null) {
            return true;
        }
        String src = XmlSupport.attr(XmlSupport.child(mb, "source"), "type");
        return "memfd".equals(src) || "file".equals(src);
    }

    /** Makes guest memory shareable; records what it changed in {@code meta}. */
    private static boolean ensureSharedMemory(Element domain, Element meta, List<String> warnings) {
        Document doc = domain.getOwnerDocument();
        boolean changed = false;
        List<Element> cells = numaCells(domain);
        for (int i = 0; i < cells.size(); i++) {
            Element c = cells.get(i);
            if ("shared".equals(c.getAttribute("memAccess"))) {
                continue;
            }
            String id = c.hasAttribute("id") ? c.getAttribute("id") : Integer.toString(i);
            boolean recorded = false;
            for (Element r : XmlSupport.childrenNs(meta, XmlTemplates.NS, "numa-cell")) {
                recorded |= id.equals(r.getAttribute("id"));
            }
            if (!recorded) {
                Element r = XmlTemplates.instantiate(doc, XmlTemplates.METADATA_NUMA_CELL,
                        Map.of("id", id, "memAccess", c.hasAttribute("memAccess") ? c.getAttribute("memAccess") : ""));
                dropNsDecl(r);
                XmlSupport.insertIndented(meta, r, firstDisk(meta));
            }
            c.setAttribute("memAccess", "shared");
            changed = true;
        }
        Element mb = XmlSupport.child(domain, "memoryBacking");
        if (mb == null) {
            mb = XmlTemplates.instantiate(doc, XmlTemplates.MEMORY_BACKING, Map.of());
            Node before = null;
            for (String after : List.of("currentMemory", "memory", "maxMemory")) {
                Element e = XmlSupport.child(domain, after);
                if (e != null) {
                    before = nextElementSibling(e);
                    break;
                }
            }
            XmlSupport.insertIndented(domain, mb, before);
            setMemoryMode(meta, "added");
            return true;
        }
        Element access = XmlSupport.child(mb, "access");
        boolean needAccess = cells.isEmpty() && !"shared".equals(XmlSupport.attr(access, "mode"));
        boolean needSource = !fdBacked(mb);
        if (!needAccess && !needSource) {
            return changed;
        }
        if ("unchanged".equals(meta.getAttribute("memory-backing"))) {
            Element original = XmlTemplates.instantiate(doc, XmlTemplates.METADATA_ORIGINAL, Map.of());
            dropNsDecl(original);
            XmlSupport.insertIndented(meta, original, firstDisk(meta));
            XmlSupport.insertIndented(original, (Element) mb.cloneNode(true), null);
            setMemoryMode(meta, "modified");
        }
        if (needSource) {
            Element src = XmlSupport.child(mb, "source");
            Element memfd = XmlTemplates.instantiate(doc, XmlTemplates.MEMORY_SOURCE_MEMFD, Map.of());
            if (src != null) {
                warnings.add("memoryBacking source type='" + src.getAttribute("type")
                        + "' replaced by memfd: vhost-user needs guest memory it can map");
                XmlSupport.replaceIndented(src, memfd);
            } else {
                XmlSupport.insertIndented(mb, memfd, access);
            }
        }
        if (needAccess) {
            if (access != null) {
                access.setAttribute("mode", "shared");
            } else {
                XmlSupport.insertIndented(mb, XmlTemplates.instantiate(doc, XmlTemplates.MEMORY_ACCESS_SHARED, Map.of()), null);
            }
        }
        return true;
    }

    private static Node firstDisk(Element meta) {
        List<Element> d = VhostblkMetadata.diskElements(meta);
        return d.isEmpty() ? null : d.getFirst();
    }

    private static void setMemoryMode(Element meta, String mode) {
        if ("unchanged".equals(meta.getAttribute("memory-backing"))) {
            meta.setAttribute("memory-backing", mode);
        }
    }

    private static void restoreMemory(Element domain, Element meta, List<String> warnings) {
        String mode = meta.getAttribute("memory-backing");
        Element mb = XmlSupport.child(domain, "memoryBacking");
        if ("added".equals(mode) && mb != null) {
            XmlSupport.removeIndented(mb);
        } else if ("modified".equals(mode)) {
            List<Element> orig = XmlSupport.childrenNs(meta, XmlTemplates.NS, "original");
            Element kept = orig.isEmpty() ? null : keptElement(orig.getFirst(), "memoryBacking");
            if (kept == null) {
                warnings.add("the original <memoryBacking> is missing from the vhostblk metadata; left as it is");
            } else if (mb != null) {
                XmlSupport.replaceIndented(mb, (Element) kept.cloneNode(true));
            }
        }
        List<Element> cells = numaCells(domain);
        for (Element r : XmlSupport.childrenNs(meta, XmlTemplates.NS, "numa-cell")) {
            String id = r.getAttribute("id");
            for (int i = 0; i < cells.size(); i++) {
                Element c = cells.get(i);
                String cid = c.hasAttribute("id") ? c.getAttribute("id") : Integer.toString(i);
                if (cid.equals(id)) {
                    String was = r.getAttribute("mem-access");
                    if (was.isEmpty()) {
                        c.removeAttribute("memAccess");
                    } else {
                        c.setAttribute("memAccess", was);
                    }
                }
            }
        }
    }

    /**
     * A copy of the element kept under {@code <vhostblk:original>}, without namespace.
     * virDomainSetMetadata moves every element of the subtree into our namespace, so a kept
     * element may come back as {@code <vhostblk:disk>}: both forms are accepted.
     */
    private static Element keptElement(Element original, String localName) {
        Element e = XmlSupport.child(original, localName);
        if (e == null) {
            List<Element> l = XmlSupport.childrenNs(original, XmlTemplates.NS, localName);
            e = l.isEmpty() ? null : l.getFirst();
        }
        if (e == null) {
            return null;
        }
        Element copy = (Element) e.cloneNode(true);
        return stripNamespace(copy);
    }

    private static Element stripNamespace(Element e) {
        Document doc = e.getOwnerDocument();
        e.removeAttributeNS("http://www.w3.org/2000/xmlns/", XmlTemplates.PREFIX);
        Element r = XmlTemplates.NS.equals(e.getNamespaceURI()) ? (Element) doc.renameNode(e, null, XmlSupport.localName(e)) : e;
        for (Element c : XmlSupport.elementChildren(r)) {
            stripNamespace(c);
        }
        return r;
    }

    /** The element to put back for a metadata entry: its kept original, else a plain disk. */
    private static Element originalDisk(Document doc, Element entry) {
        List<Element> orig = XmlSupport.childrenNs(entry, XmlTemplates.NS, "original");
        if (!orig.isEmpty()) {
            Element d = keptElement(orig.getFirst(), "disk");
            if (d != null) {
                return d;
            }
        }
        DiskSpec s = VhostblkMetadata.toSpec(entry);
        return XmlTemplates.instantiate(doc, "block".equals(s.sourceType()) ? XmlTemplates.BLOCK_DISK : XmlTemplates.FILE_DISK,
                Map.of("format", s.format(), "image", s.image(), "target", s.target()));
    }
}
