package io.vhostblk.plugin.xml;

import org.w3c.dom.Element;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Reads and builds vhostblk's element under the domain's {@code <metadata>}. */
public final class VhostblkMetadata {
    private VhostblkMetadata() {}

    /** domain/metadata/vhostblk:vhostblk, or null. */
    public static Element find(Element domain) {
        Element md = XmlSupport.child(domain, "metadata");
        if (md == null) {
            return null;
        }
        List<Element> l = XmlSupport.childrenNs(md, XmlTemplates.NS, "vhostblk");
        return l.isEmpty() ? null : l.getFirst();
    }

    public static List<Element> diskElements(Element vhostblk) {
        return XmlSupport.childrenNs(vhostblk, XmlTemplates.NS, "disk");
    }

    public static Element diskElement(Element vhostblk, String target) {
        for (Element e : diskElements(vhostblk)) {
            if (target.equals(e.getAttribute("target"))) {
                return e;
            }
        }
        return null;
    }

    public static List<DiskSpec> disks(Element vhostblk) {
        List<DiskSpec> out = new ArrayList<>();
        for (Element e : diskElements(vhostblk)) {
            out.add(toSpec(e));
        }
        return out;
    }

    public static DiskSpec toSpec(Element e) {
        String target = req(e, "target");
        try {
            return new DiskSpec(target, req(e, "socket"), req(e, "image"), XmlSupport.attr(e, "source-type"),
                    req(e, "format"), "yes".equals(e.getAttribute("readonly")), XmlSupport.attr(e, "serial"),
                    XmlSupport.attr(e, "cache"), XmlSupport.attr(e, "discard"),
                    Integer.parseInt(req(e, "queues")), intOrNull(e, "workers"), intOrNull(e, "poll-us"));
        } catch (NumberFormatException ex) {
            throw new RewriteException("vhostblk metadata of disk " + target + ": bad number: " + ex.getMessage());
        }
    }

    /** Template values of a metadata disk entry. */
    static Map<String, String> values(DiskSpec s) {
        Map<String, String> v = new LinkedHashMap<>();
        v.put("target", s.target());
        v.put("socket", s.socket());
        v.put("image", s.image());
        v.put("sourceType", s.sourceType());
        v.put("format", s.format());
        v.put("readonly", s.readOnly() ? "yes" : "no");
        v.put("serial", s.serial());
        v.put("cache", s.cache());
        v.put("discard", s.discard());
        v.put("queues", Integer.toString(s.queues()));
        v.put("workers", s.workers() == null ? null : s.workers().toString());
        v.put("pollUs", s.pollUs() == null ? null : s.pollUs().toString());
        return v;
    }

    private static String req(Element e, String name) {
        String v = XmlSupport.attr(e, name);
        if (v == null || v.isEmpty()) {
            throw new RewriteException("vhostblk metadata: <disk> without " + name + " attribute");
        }
        return v;
    }

    private static Integer intOrNull(Element e, String name) {
        String v = XmlSupport.attr(e, name);
        return v == null || v.isEmpty() ? null : Integer.valueOf(v);
    }
}
