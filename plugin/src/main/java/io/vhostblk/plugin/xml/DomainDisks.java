package io.vhostblk.plugin.xml;

import org.w3c.dom.Document;
import org.w3c.dom.Element;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The disks of a domain that a vhostblk backend must serve: every {@code <disk type='vhostuser'>}
 * that has an entry in vhostblk's metadata. The socket path is the one on the disk element
 * (what QEMU will connect to).
 */
public record DomainDisks(String name, String uuid, List<DiskSpec> disks) {

    public static DomainDisks parse(String domainXml) {
        Document d = XmlSupport.parse(domainXml);
        Element root = d.getDocumentElement();
        if (!"domain".equals(XmlSupport.localName(root))) {
            throw new RewriteException("not a libvirt domain XML (root element <" + XmlSupport.localName(root) + ">)");
        }
        Map<String, DiskSpec> meta = new LinkedHashMap<>();
        Element m = VhostblkMetadata.find(root);
        if (m != null) {
            for (DiskSpec s : VhostblkMetadata.disks(m)) {
                meta.put(s.target(), s);
            }
        }
        List<DiskSpec> out = new ArrayList<>();
        Element devices = XmlSupport.child(root, "devices");
        if (devices != null) {
            for (Element disk : XmlSupport.children(devices, "disk")) {
                if (!"vhostuser".equals(disk.getAttribute("type"))) {
                    continue;
                }
                String target = XmlSupport.attr(XmlSupport.child(disk, "target"), "dev");
                DiskSpec s = target == null ? null : meta.get(target);
                if (s == null) {
                    continue; // a vhostuser disk of somebody else
                }
                String path = XmlSupport.attr(XmlSupport.child(disk, "source"), "path");
                if (path != null && !path.equals(s.socket())) {
                    s = new DiskSpec(s.target(), path, s.image(), s.sourceType(), s.format(), s.readOnly(), s.serial(),
                            s.cache(), s.discard(), s.queues(), s.workers(), s.pollUs());
                }
                out.add(s);
            }
        }
        return new DomainDisks(XmlSupport.text(XmlSupport.child(root, "name")),
                XmlSupport.text(XmlSupport.child(root, "uuid")), out);
    }
}
