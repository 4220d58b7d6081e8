package io.vhostblk.plugin.xml;

import org.w3c.dom.Attr;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NamedNodeMap;
import org.w3c.dom.Node;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The XML fragments the rewriter emits, read from the {@code vhostblk-xml-templates} module
 * ({@code /io/vhostblk/templates/*.xml}). A template is instantiated by replacing
 * {@code {{name}}} in attribute values and text with a value (set as DOM text, so escaping is
 * the serializer's job); an attribute whose whole value is {@code {{name?}}} is dropped when the
 * value is absent.
 */
public final class XmlTemplates {
    public static final String RESOURCE_DIR = "/io/vhostblk/templates/";
    /** Namespace of vhostblk's element under the domain's {@code <metadata>}. */
    public static final String NS = "https://vhostblk.io/xmlns/libvirt/1";
    public static final String PREFIX = "vhostblk";

    public static final String VHOSTUSER_DISK = "vhostuser-disk.xml";
    public static final String FILE_DISK = "file-disk.xml";
    public static final String BLOCK_DISK = "block-disk.xml";
    public static final String MEMORY_BACKING = "memory-backing.xml";
    public static final String MEMORY_ACCESS_SHARED = "memory-access-shared.xml";
    public static final String MEMORY_SOURCE_MEMFD = "memory-source-memfd.xml";
    public static final String METADATA = "metadata.xml";
    public static final String METADATA_DISK = "metadata-disk.xml";
    public static final String METADATA_ORIGINAL = "metadata-original.xml";
    public static final String METADATA_NUMA_CELL = "metadata-numa-cell.xml";

    private static final Pattern PLACEHOLDER = Pattern.compile("\\{\\{([A-Za-z0-9_]+)(\\??)}}");
    private static final Map<String, String> SOURCES = new ConcurrentHashMap<>();

    private XmlTemplates() {}

    static String source(String name) {
        return SOURCES.computeIfAbsent(name, n -> {
            try (InputStream in = XmlTemplates.class.getResourceAsStream(RESOURCE_DIR + n)) {
                if (in == null) {
                    throw new IllegalStateException("XML template " + RESOURCE_DIR + n
                            + " not on the classpath (vhostblk-xml-templates jar missing?)");
                }
                return new String(in.readAllBytes(), StandardCharsets.UTF_8);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        });
    }

    /** A new element for {@code target} built from the template; null values mean "absent". */
    public static Element instantiate(Document target, String name, Map<String, String> values) {
        Document t = XmlSupport.parse(source(name));
        Element root = t.getDocumentElement();
        fill(root, values, name);
        Element imported = (Element) target.importNode(root, true);
        stripComments(imported);
        return imported;
    }

    private static void fill(Element e, Map<String, String> values, String template) {
        NamedNodeMap attrs = e.getAttributes();
        List<Attr> drop = new ArrayList<>();
        for (int i = 0; i < attrs.getLength(); i++) {
            Attr a = (Attr) attrs.item(i);
            String v = a.getValue();
            Matcher whole = PLACEHOLDER.matcher(v);
            if (whole.matches() && !whole.group(2).isEmpty() && values.get(whole.group(1)) == null) {
                drop.add(a);
                continue;
            }
            a.setValue(substitute(v, values, template));
        }
        for (Attr a : drop) {
            e.removeAttributeNode(a);
        }
        for (Node n = e.getFirstChild(); n != null; n = n.getNextSibling()) {
            if (n instanceof Element c) {
                fill(c, values, template);
            } else if (n.getNodeType() == Node.TEXT_NODE) {
                n.setNodeValue(substitute(n.getNodeValue(), values, template));
            }
        }
    }

    private static String substitute(String s, Map<String, String> values, String template) {
        Matcher m = PLACEHOLDER.matcher(s);
        StringBuilder sb = new StringBuilder();
        while (m.find()) {
            String v = values.get(m.group(1));
            if (v == null) {
                if (m.group(2).isEmpty()) {
                    throw new IllegalArgumentException("template " + template + ": no value for {{" + m.group(1) + "}}");
                }
                v = "";
            }
            m.appendReplacement(sb, Matcher.quoteReplacement(v));
        }
        m.appendTail(sb);
        return sb.toString();
    }

    private static void stripComments(Node n) {
        Node c = n.getFirstChild();
        while (c != null) {
            Node next = c.getNextSibling();
            if (c.getNodeType() == Node.COMMENT_NODE) {
                n.removeChild(c);
            } else {
                stripComments(c);
            }
            c = next;
        }
    }
}
