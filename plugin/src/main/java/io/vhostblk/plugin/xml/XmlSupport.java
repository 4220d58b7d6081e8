package io.vhostblk.plugin.xml;

import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NamedNodeMap;
import org.w3c.dom.Node;
import org.w3c.dom.NodeList;
import org.xml.sax.InputSource;
import org.xml.sax.SAXException;

import javax.xml.XMLConstants;
import javax.xml.parsers.DocumentBuilder;
import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.parsers.ParserConfigurationException;
import javax.xml.transform.OutputKeys;
import javax.xml.transform.Transformer;
import javax.xml.transform.TransformerException;
import javax.xml.transform.TransformerFactory;
import javax.xml.transform.dom.DOMSource;
import javax.xml.transform.stream.StreamResult;
import java.io.IOException;
import java.io.StringReader;
import java.io.StringWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/** DOM helpers: safe parsing (no DTDs, no external entities), serialization, indentation. */
public final class XmlSupport {
    private XmlSupport() {}

    public static Document parse(String xml) {
        try {
            DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
            f.setNamespaceAware(true);
            f.setExpandEntityReferences(false);
            f.setFeature(XMLConstants.FEATURE_SECURE_PROCESSING, true);
            f.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
            f.setFeature("http://apache.org/xml/features/nonvalidating/load-external-dtd", false);
            f.setXIncludeAware(false);
            DocumentBuilder b = f.newDocumentBuilder();
            b.setErrorHandler(null);
            return b.parse(new InputSource(new StringReader(xml)));
        } catch (ParserConfigurationException e) {
            throw new IllegalStateException(e);
        } catch (SAXException | IOException e) {
            throw new RewriteException("not well-formed XML: " + e.getMessage(), e);
        }
    }

    /** Serializes without an XML declaration and without re-indenting (whitespace is kept as is). */
    public static String serialize(Node node) {
        try {
            TransformerFactory tf = TransformerFactory.newInstance();
            tf.setAttribute(XMLConstants.ACCESS_EXTERNAL_DTD, "");
            tf.setAttribute(XMLConstants.ACCESS_EXTERNAL_STYLESHEET, "");
            Transformer t = tf.newTransformer();
            t.setOutputProperty(OutputKeys.OMIT_XML_DECLARATION, "yes");
            t.setOutputProperty(OutputKeys.ENCODING, "UTF-8");
            t.setOutputProperty(OutputKeys.INDENT, "no");
            StringWriter w = new StringWriter();
            t.transform(new DOMSource(node), new StreamResult(w));
            String s = w.toString();
            return node instanceof Document && !s.endsWith("\n") ? s + "\n" : s;
        } catch (TransformerException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Element children of {@code parent} (any namespace) with this local name. */
    public static List<Element> children(Element parent, String localName) {
        List<Element> out = new ArrayList<>();
        for (Node n = parent.getFirstChild(); n != null; n = n.getNextSibling()) {
            if (n instanceof Element e && localName.equals(localName(e)) && e.getNamespaceURI() == null) {
                out.add(e);
            }
        }
        return out;
    }

    /** Element children of {@code parent} in namespace {@code ns} with this local name. */
    public static List<Element> childrenNs(Element parent, String ns, String localName) {
        List<Element> out = new ArrayList<>();
        for (Node n = parent.getFirstChild(); n != null; n = n.getNextSibling()) {
            if (n instanceof Element e && localName.equals(localName(e)) && ns.equals(e.getNamespaceURI())) {
                out.add(e);
            }
        }
        return out;
    }

    public static List<Element> elementChildren(Element parent) {
        List<Element> out = new ArrayList<>();
        for (Node n = parent.getFirstChild(); n != null; n = n.getNextSibling()) {
            if (n instanceof Element e) {
                out.add(e);
            }
        }
        return out;
    }

    public static Element child(Element parent, String localName) {
        List<Element> l = children(parent, localName);
        return l.isEmpty() ? null : l.getFirst();
    }

    public static String localName(Element e) {
        return e.getLocalName() != null ? e.getLocalName() : e.getTagName();
    }

    /** Attribute value or null when absent. */
    public static String attr(Element e, String name) {
        if (e == null || !e.hasAttribute(name)) {
            return null;
        }
        return e.getAttribute(name);
    }

    public static String text(Element e) {
        return e == null ? null : e.getTextContent().trim();
    }

    /** Whitespace before {@code node} on its line ("" when it is not preceded by indentation). */
    static String indentOf(Node node) {
        Node prev = node.getPreviousSibling();
        if (prev != null && prev.getNodeType() == Node.TEXT_NODE) {
            String t = prev.getNodeValue();
            int nl = t.lastIndexOf('\n');
            if (nl >= 0 && t.substring(nl + 1).isBlank()) {
                return t.substring(nl + 1);
            }
        }
        return "";
    }

    /** Removes whitespace-only text nodes below {@code e} and indents it as libvirt does (2 spaces). */
    public static void reindent(Element e, String indent) {
        List<Node> blank = new ArrayList<>();
        boolean hasElements = false;
        for (Node n = e.getFirstChild(); n != null; n = n.getNextSibling()) {
            if (n.getNodeType() == Node.TEXT_NODE && n.getNodeValue().isBlank()) {
                blank.add(n);
            } else if (n.getNodeType() == Node.COMMENT_NODE) {
                blank.add(n);
            } else if (n instanceof Element) {
                hasElements = true;
            }
        }
        if (!hasElements) {
            return;
        }
        for (Node n : blank) {
            e.removeChild(n);
        }
        String inner = indent + "  ";
        for (Element c : elementChildren(e)) {
            e.insertBefore(e.getOwnerDocument().createTextNode("\n" + inner), c);
            reindent(c, inner);
        }
        e.appendChild(e.getOwnerDocument().createTextNode("\n" + indent));
    }

    /**
     * Inserts {@code child} into {@code parent} before {@code before} (null: at the end), indented
     * like its siblings.
     */
    public static void insertIndented(Element parent, Element child, Node before) {
        String parentIndent = indentOf(parent);
        String inner = parentIndent + "  ";
        reindent(child, inner);
        Document d = parent.getOwnerDocument();
        boolean hasElementChildren = !elementChildren(parent).isEmpty();
        if (before == null) {
            Node last = parent.getLastChild();
            if (!hasElementChildren) {
                // <parent/> or <parent>   </parent>: normalize to one child per line
                while (parent.getFirstChild() != null && parent.getFirstChild().getNodeType() == Node.TEXT_NODE
                        && parent.getFirstChild().getNodeValue().isBlank()) {
                    parent.removeChild(parent.getFirstChild());
                }
                parent.appendChild(d.createTextNode("\n" + inner));
                parent.appendChild(child);
                parent.appendChild(d.createTextNode("\n" + parentIndent));
                return;
            }
            if (last != null && last.getNodeType() == Node.TEXT_NODE && last.getNodeValue().isBlank()) {
                parent.insertBefore(d.createTextNode("\n" + inner), last);
                parent.insertBefore(child, last);
            } else {
                parent.appendChild(d.createTextNode("\n" + inner));
                parent.appendChild(child);
            }
            return;
        }
        parent.insertBefore(child, before);
        parent.insertBefore(d.createTextNode("\n" + inner), before);
    }

    /** Removes {@code e} and the indentation in front of it. */
    public static void removeIndented(Element e) {
        Node parent = e.getParentNode();
        Node prev = e.getPreviousSibling();
        if (prev != null && prev.getNodeType() == Node.TEXT_NODE && prev.getNodeValue().isBlank()) {
            parent.removeChild(prev);
        }
        parent.removeChild(e);
    }

    /** Replaces {@code old} by {@code replacement} at the same place and indentation. */
    public static void replaceIndented(Element old, Element replacement) {
        reindent(replacement, indentOf(old));
        old.getParentNode().replaceChild(replacement, old);
    }

    /**
     * A canonical text of a node for comparisons: attributes sorted, whitespace-only text dropped,
     * other text trimmed, comments dropped, namespace prefixes replaced by URIs.
     */
    public static String canonical(Node node) {
        StringBuilder sb = new StringBuilder();
        canonical(node instanceof Document d ? d.getDocumentElement() : node, sb, 0);
        return sb.toString();
    }

    private static void canonical(Node n, StringBuilder sb, int depth) {
        if (n instanceof Element e) {
            sb.append("  ".repeat(depth)).append('<');
            if (e.getNamespaceURI() != null) {
                sb.append('{').append(e.getNamespaceURI()).append('}');
            }
            sb.append(localName(e));
            Map<String, String> attrs = new TreeMap<>();
            NamedNodeMap m = e.getAttributes();
            for (int i = 0; i < m.getLength(); i++) {
                Node a = m.item(i);
                if ("http://www.w3.org/2000/xmlns/".equals(a.getNamespaceURI())) {
                    continue;
                }
                String name = a.getNamespaceURI() != null ? "{" + a.getNamespaceURI() + "}" + a.getLocalName() : a.getNodeName();
                attrs.put(name, a.getNodeValue());
            }
            attrs.forEach((k, v) -> sb.append(' ').append(k).append("=\"").append(v).append('"'));
            sb.append(">\n");
            NodeList kids = e.getChildNodes();
            for (int i = 0; i < kids.getLength(); i++) {
                canonical(kids.item(i), sb, depth + 1);
            }
        } else if (n.getNodeType() == Node.TEXT_NODE || n.getNodeType() == Node.CDATA_SECTION_NODE) {
            String t = n.getNodeValue().trim();
            if (!t.isEmpty()) {
                sb.append("  ".repeat(depth)).append("text:").append(t).append('\n');
            }
        }
    }
}
