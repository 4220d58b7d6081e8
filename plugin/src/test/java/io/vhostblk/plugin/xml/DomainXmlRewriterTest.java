package io.vhostblk.plugin.xml;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.w3c.dom.Document;
import org.w3c.dom.Element;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The rewriter on a corpus of real-world domain XMLs (src/test/resources/domains). */
class DomainXmlRewriterTest {
    static final List<String> CORPUS = List.of("virt-install-debian12.xml", "numa-cells.xml", "hugepages.xml",
            "cdrom-scsi.xml", "cloudstack-serial.xml");
    /** what libvirt's virDomainDiskVhostUserValidate() refuses on a vhostuser disk */
    static final Set<String> REJECTED_CHILDREN = Set.of("serial", "readonly", "backingStore", "iotune", "encryption",
            "shareable", "transient", "wwn", "vendor", "product", "auth", "geometry", "blockio");
    static final Set<String> REJECTED_DRIVER_ATTRS = Set.of("cache", "discard", "io", "ioeventfd", "copy_on_read",
            "detect_zeroes", "iothread", "error_policy", "rerror_policy");

    final DomainXmlRewriter rewriter = new DomainXmlRewriter();

    static String corpus(String name) {
        try (InputStream in = DomainXmlRewriterTest.class.getResourceAsStream("/domains/" + name)) {
            assertNotNull(in, name);
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }

    static Map<String, Element> disksByTarget(String xml) {
        Document d = XmlSupport.parse(xml);
        Element devices = XmlSupport.child(d.getDocumentElement(), "devices");
        return XmlSupport.children(devices, "disk").stream().collect(Collectors.toMap(
                e -> XmlSupport.attr(XmlSupport.child(e, "target"), "dev"), e -> e, (a, b) -> a, java.util.LinkedHashMap::new));
    }

    static void assertValidVhostuserDisk(Element disk) {
        assertEquals("vhostuser", disk.getAttribute("type"));
        assertEquals("disk", disk.getAttribute("device"));
        for (Element c : XmlSupport.elementChildren(disk)) {
            assertFalse(REJECTED_CHILDREN.contains(XmlSupport.localName(c)), "vhostuser disk still has <" + XmlSupport.localName(c) + ">");
        }
        Element driver = XmlSupport.child(disk, "driver");
        assertEquals("raw", driver.getAttribute("type"));
        for (String a : REJECTED_DRIVER_ATTRS) {
            assertFalse(driver.hasAttribute(a), "driver still has " + a);
        }
        Element source = XmlSupport.child(disk, "source");
        assertEquals("unix", source.getAttribute("type"));
        assertTrue(source.getAttribute("path").startsWith("/run/vhostblk/sockets/"), source.getAttribute("path"));
        assertEquals("yes", XmlSupport.child(source, "reconnect").getAttribute("enabled"));
        assertEquals("virtio", XmlSupport.child(disk, "target").getAttribute("bus"));
    }

    @ParameterizedTest
    @ValueSource(strings = {"virt-install-debian12.xml", "numa-cells.xml", "hugepages.xml", "cdrom-scsi.xml", "cloudstack-serial.xml"})
    void convertThenRevertGivesTheOriginalBack(String file) {
        String original = corpus(file);
        RewriteResult c = rewriter.convert(original, ConvertOptions.defaults());
        assertTrue(c.modified(), file);
        assertFalse(c.changed().isEmpty(), file);
        assertTrue(rewriter.hasSharedMemory(c.xml()), file + ": guest memory not shared after convert");
        assertFalse(rewriter.hasSharedMemory(original), file + ": corpus file already had shared memory");
        Map<String, Element> before = disksByTarget(original);
        Map<String, Element> after = disksByTarget(c.xml());
        assertEquals(before.keySet(), after.keySet(), "same disks, same order");
        for (var e : after.entrySet()) {
            if (c.changed().contains(e.getKey())) {
                assertValidVhostuserDisk(e.getValue());
                // PCI address, boot order and alias stay where they were
                for (String kept : List.of("address", "boot", "alias")) {
                    Element o = XmlSupport.child(before.get(e.getKey()), kept);
                    Element n = XmlSupport.child(e.getValue(), kept);
                    assertEquals(o == null ? null : XmlSupport.canonical(o), n == null ? null : XmlSupport.canonical(n), kept);
                }
            } else {
                assertEquals(XmlSupport.canonical(before.get(e.getKey())), XmlSupport.canonical(e.getValue()),
                        "untouched disk " + e.getKey());
            }
        }
        // everything that is not a disk, memory or metadata is untouched
        assertEquals(withoutRewrittenParts(original), withoutRewrittenParts(c.xml()), file);

        // idempotent: converting twice changes nothing
        RewriteResult again = rewriter.convert(c.xml(), ConvertOptions.defaults());
        assertFalse(again.modified());
        assertSame(c.xml(), again.xml());
        assertTrue(again.changed().isEmpty());

        // the backend settings are readable back
        DomainDisks dd = DomainDisks.parse(c.xml());
        assertEquals(c.changed(), dd.disks().stream().map(DiskSpec::target).toList());

        RewriteResult r = rewriter.revert(c.xml(), Set.of());
        assertEquals(c.changed(), r.changed());
        assertEquals(XmlSupport.canonical(XmlSupport.parse(original)), XmlSupport.canonical(XmlSupport.parse(r.xml())), file);
        // and the layout too: the same text as the original run through the same serializer
        assertEquals(XmlSupport.serialize(XmlSupport.parse(original)), r.xml(), file + ": revert restores the layout");
    }

    /** The domain without devices/disk, memoryBacking, cpu/numa memAccess and vhostblk metadata. */
    static String withoutRewrittenParts(String xml) {
        Document d = XmlSupport.parse(xml);
        Element root = d.getDocumentElement();
        Element devices = XmlSupport.child(root, "devices");
        for (Element disk : XmlSupport.children(devices, "disk")) {
            devices.removeChild(disk);
        }
        Element mb = XmlSupport.child(root, "memoryBacking");
        if (mb != null) {
            root.removeChild(mb);
        }
        Element meta = VhostblkMetadata.find(root);
        if (meta != null) {
            Element md = (Element) meta.getParentNode();
            md.removeChild(meta);
            if (XmlSupport.elementChildren(md).isEmpty()) {
                root.removeChild(md);
            }
        }
        Element cpu = XmlSupport.child(root, "cpu");
        if (cpu != null && XmlSupport.child(cpu, "numa") != null) {
            for (Element cell : XmlSupport.children(XmlSupport.child(cpu, "numa"), "cell")) {
                cell.removeAttribute("memAccess");
            }
        }
        return XmlSupport.canonical(d);
    }

    @Test
    void virtInstallQcow2WithDiscard() {
        RewriteResult c = rewriter.convert(corpus("virt-install-debian12.xml"), ConvertOptions.defaults());
        assertEquals(List.of("vda"), c.changed());
        assertTrue(c.skipped().stream().anyMatch(s -> s.startsWith("sda: device='cdrom'")), c.skipped().toString());
        DiskSpec s = DomainDisks.parse(c.xml()).disks().getFirst();
        assertEquals("/var/lib/libvirt/images/debian12.qcow2", s.image());
        assertEquals("qcow2", s.format());
        assertEquals("unmap", s.discard());
        assertEquals(2, s.queues(), "defaults to the vCPU count");
        assertEquals("/run/vhostblk/sockets/debian12-vda.sock", s.socket());
        assertEquals(List.of("--socket-path", "/run/vhostblk/sockets/debian12-vda.sock", "--blk-file",
                "/var/lib/libvirt/images/debian12.qcow2", "--format", "qcow2", "--num-queues", "2"), s.backendArgs(false));
        Document d = XmlSupport.parse(c.xml());
        Element mb = XmlSupport.child(d.getDocumentElement(), "memoryBacking");
        assertEquals("memfd", XmlSupport.child(mb, "source").getAttribute("type"));
        assertEquals("shared", XmlSupport.child(mb, "access").getAttribute("mode"));
        // the libosinfo metadata stays next to ours
        Element md = XmlSupport.child(d.getDocumentElement(), "metadata");
        assertEquals(2, XmlSupport.elementChildren(md).size());
        assertEquals("added", VhostblkMetadata.find(d.getDocumentElement()).getAttribute("memory-backing"));
    }

    @Test
    void numaCellsGetSharedMemAccess() {
        String original = corpus("numa-cells.xml");
        RewriteResult c = rewriter.convert(original, ConvertOptions.defaults());
        assertEquals(List.of("vda", "vdb"), c.changed());
        Document d = XmlSupport.parse(c.xml());
        Element numa = XmlSupport.child(XmlSupport.child(d.getDocumentElement(), "cpu"), "numa");
        for (Element cell : XmlSupport.children(numa, "cell")) {
            assertEquals("shared", cell.getAttribute("memAccess"));
        }
        // memAccess alone is not enough: QEMU needs fd-backed RAM
        Element mb = XmlSupport.child(d.getDocumentElement(), "memoryBacking");
        assertEquals("memfd", XmlSupport.child(mb, "source").getAttribute("type"));
        List<DiskSpec> specs = DomainDisks.parse(c.xml()).disks();
        assertEquals(4, specs.get(0).queues(), "keeps driver queues");
        assertEquals(8, specs.get(1).queues(), "vCPU count");
        assertEquals("none", specs.get(0).cache());
        assertEquals("block", specs.get(0).sourceType());
        assertEquals("/dev/vg0/db-root", specs.get(0).image());
        assertTrue(c.warnings().stream().anyMatch(w -> w.contains("io='native'")), c.warnings().toString());
        Element vda = disksByTarget(c.xml()).get("vda");
        assertEquals("1", XmlSupport.child(vda, "boot").getAttribute("order"));

        RewriteResult r = rewriter.revert(c.xml(), Set.of());
        Element numa2 = XmlSupport.child(XmlSupport.child(XmlSupport.parse(r.xml()).getDocumentElement(), "cpu"), "numa");
        List<Element> cells = XmlSupport.children(numa2, "cell");
        assertFalse(cells.get(0).hasAttribute("memAccess"));
        assertEquals("private", cells.get(1).getAttribute("memAccess"));
    }

    @Test
    void hugepagesKeptAndQcow2BackingChainLeftToTheBackend() {
        String original = corpus("hugepages.xml");
        RewriteResult c = rewriter.convert(original, ConvertOptions.defaults().withQueues(2).withWorkers(2));
        Document d = XmlSupport.parse(c.xml());
        Element mb = XmlSupport.child(d.getDocumentElement(), "memoryBacking");
        assertNotNull(XmlSupport.child(mb, "hugepages"), "hugepages stay");
        assertNotNull(XmlSupport.child(mb, "locked"));
        assertNull(XmlSupport.child(mb, "source"), "hugepages are fd-backed already");
        assertEquals("shared", XmlSupport.child(mb, "access").getAttribute("mode"));
        assertEquals("modified", VhostblkMetadata.find(d.getDocumentElement()).getAttribute("memory-backing"));
        DiskSpec s = DomainDisks.parse(c.xml()).disks().getFirst();
        assertEquals("qcow2", s.format());
        assertEquals("/srv/vm/nfv-overlay.qcow2", s.image());
        assertEquals("writeback", s.cache());
        assertEquals(2, s.queues());
        assertEquals(2, s.workers());
        assertEquals("2", XmlSupport.child(disksByTarget(c.xml()).get("vda"), "driver").getAttribute("queues"));
        assertTrue(c.warnings().stream().anyMatch(w -> w.contains("<iotune>") && w.contains("not enforced")), c.warnings().toString());
        assertTrue(c.warnings().stream().anyMatch(w -> w.contains("writethrough")), c.warnings().toString());
        // the vhost-user NIC is not ours and stays
        assertTrue(c.xml().contains("/var/run/openvswitch/vhu0"));
        RewriteResult r = rewriter.revert(c.xml(), Set.of());
        assertEquals(XmlSupport.canonical(XmlSupport.parse(original)), XmlSupport.canonical(XmlSupport.parse(r.xml())));
    }

    @Test
    void cdromScsiLunAndNetworkDisksStayUntouched() {
        String original = corpus("cdrom-scsi.xml");
        RewriteResult c = rewriter.convert(original, ConvertOptions.defaults());
        assertEquals(List.of("vdb"), c.changed());
        assertEquals(4, c.skipped().size(), c.skipped().toString());
        DiskSpec s = DomainDisks.parse(c.xml()).disks().getFirst();
        assertTrue(s.readOnly(), "readonly carried to the backend (VIRTIO_BLK_F_RO)");
        assertEquals("writeback", s.cache());
        assertTrue(s.backendArgs(false).contains("--read-only"));
        assertTrue(c.xml().contains("passwd=\"s3cret\""), "VNC password kept");
        for (String t : List.of("sda", "sdb", "hdc", "vdc")) {
            RewriteException e = assertThrows(RewriteException.class,
                    () -> rewriter.convert(original, ConvertOptions.defaults().withTargets(Set.of(t))));
            assertTrue(e.getMessage().startsWith("disk " + t + " cannot be converted"), e.getMessage());
        }
        RewriteException e = assertThrows(RewriteException.class,
                () -> rewriter.convert(original, ConvertOptions.defaults().withTargets(Set.of("vdz"))));
        assertTrue(e.getMessage().contains("no disk with target vdz"), e.getMessage());
    }

    @Test
    void cloudstackSerialIsCarriedToTheBackend() {
        String original = corpus("cloudstack-serial.xml");
        RewriteResult c = rewriter.convert(original, ConvertOptions.defaults());
        assertEquals(List.of("vda", "vdb"), c.changed());
        List<DiskSpec> specs = DomainDisks.parse(c.xml()).disks();
        assertEquals("6a1b2c3d4e5f67890abc", specs.get(0).serial());
        assertEquals("77aa88bb99cc4ddd8eee", specs.get(1).serial(), "cut to virtio-blk's 20 bytes");
        assertTrue(c.warnings().stream().anyMatch(w -> w.contains("20 bytes")), c.warnings().toString());
        assertTrue(specs.get(0).backendArgs(false).containsAll(List.of("--serial", "6a1b2c3d4e5f67890abc")));
        assertEquals("unmap", specs.get(1).discard());
        assertTrue(specs.get(1).backendArgs(true).containsAll(List.of("--discard", "unmap")));
        assertFalse(specs.get(1).backendArgs(false).contains("--discard"));
        // CloudStack's instance names are safe socket names
        assertEquals("/run/vhostblk/sockets/i-2-34-VM-vda.sock", specs.get(0).socket());
        Element vda = disksByTarget(c.xml()).get("vda");
        assertEquals("virtio-disk0", XmlSupport.child(vda, "alias").getAttribute("name"));
        assertTrue(XmlSupport.parse(c.xml()).getDocumentElement().getElementsByTagName("cloudstack:instance").getLength() == 1);
    }

    @Test
    void convertSomeDisksThenMoreThenRevertSome() {
        String original = corpus("numa-cells.xml");
        RewriteResult c1 = rewriter.convert(original, ConvertOptions.defaults().withTargets(Set.of("vdb")));
        assertEquals(List.of("vdb"), c1.changed());
        assertEquals("block", disksByTarget(c1.xml()).get("vda").getAttribute("type"));
        RewriteResult c2 = rewriter.convert(c1.xml(), ConvertOptions.defaults());
        assertEquals(List.of("vda"), c2.changed());
        RewriteResult r1 = rewriter.revert(c2.xml(), Set.of("vdb"));
        assertEquals(List.of("vdb"), r1.changed());
        assertTrue(rewriter.hasSharedMemory(r1.xml()), "memory stays shared while vda is served");
        assertEquals(List.of("vda"), DomainDisks.parse(r1.xml()).disks().stream().map(DiskSpec::target).toList());
        RewriteResult r2 = rewriter.revert(r1.xml(), Set.of());
        assertEquals(XmlSupport.canonical(XmlSupport.parse(original)), XmlSupport.canonical(XmlSupport.parse(r2.xml())));
        // reverting a domain that is not converted is a no-op
        RewriteResult r3 = rewriter.revert(original, Set.of("vda"));
        assertFalse(r3.modified());
        assertEquals(List.of("vda: not a vhostblk disk"), r3.skipped());
    }

    @Test
    void socketPathFallsBackToUuid() {
        assertEquals("/run/vb/web-1-vda.sock", DomainXmlRewriter.socketPath("/run/vb", "web-1", null, "vda"));
        assertEquals("/run/vb/5d3c1bd0-3a5e-4a3b-9c37-0f6d0a1b8e11-vdb.sock",
                DomainXmlRewriter.socketPath("/run/vb/", "web 1/é", "5D3C1BD0-3A5E-4A3B-9C37-0F6D0A1B8E11", "vdb"));
        assertThrows(RewriteException.class, () -> DomainXmlRewriter.socketPath("/run/vb", "a b", null, "vda"));
        assertThrows(RewriteException.class, () -> DomainXmlRewriter.socketPath("/run/vb", "ok", null, "../x"));
    }

    @Test
    void hotplugHelpers() {
        String converted = rewriter.convert(corpus("virt-install-debian12.xml"), ConvertOptions.defaults()).xml();
        DiskSpec extra = new DiskSpec("vdb", "/run/vhostblk/sockets/debian12-vdb.sock", "/srv/extra.raw", "file", "raw",
                false, null, null, null, 2, null, null);
        String diskXml = rewriter.vhostuserDiskXml(extra, 1);
        Element disk = XmlSupport.parse(diskXml).getDocumentElement();
        assertValidVhostuserDisk(disk);
        String meta = rewriter.metadataWithDisk(converted, extra);
        // virDomainSetMetadata form: root without namespace (libvirt adds it), children in ours
        assertFalse(meta.startsWith("<vhostblk:"), meta);
        Element m = XmlSupport.parse(meta.replaceFirst("^<vhostblk ", "<vhostblk:vhostblk xmlns:vhostblk=\"" + XmlTemplates.NS + "\" ")
                .replaceFirst("</vhostblk>\\s*$", "</vhostblk:vhostblk>")).getDocumentElement();
        assertEquals(List.of("vda", "vdb"), VhostblkMetadata.disks(m).stream().map(DiskSpec::target).toList());
        String without = rewriter.metadataWithoutDisk(converted, "vda");
        assertEquals(0, VhostblkMetadata.disks(XmlSupport.parse(without).getDocumentElement()).size());
        // a disk vhostblk attached itself (no kept original) reverts to a plain file disk
        String noOriginal = converted.replaceAll("(?s)<vhostblk:original>.*?</vhostblk:original>", "");
        RewriteResult r = rewriter.revert(noOriginal, Set.of("vda"));
        Element plain = disksByTarget(r.xml()).get("vda");
        assertEquals("file", plain.getAttribute("type"));
        assertEquals("/var/lib/libvirt/images/debian12.qcow2", XmlSupport.child(plain, "source").getAttribute("file"));
        assertEquals("qcow2", XmlSupport.child(plain, "driver").getAttribute("type"));
    }

    /** virDomainSetMetadata moves every element under our element into our namespace. */
    @ParameterizedTest
    @ValueSource(strings = {"cloudstack-serial.xml", "hugepages.xml"})
    void revertAcceptsOriginalsMovedIntoOurNamespace(String file) {
        String original = corpus(file);
        String converted = rewriter.convert(original, ConvertOptions.defaults()).xml();
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("(?s)<vhostblk:original>(.*?)</vhostblk:original>").matcher(converted);
        StringBuilder sb = new StringBuilder();
        while (m.find()) {
            String inner = m.group(1).replaceAll("<(/?)([A-Za-z])", "<$1vhostblk:$2");
            m.appendReplacement(sb, java.util.regex.Matcher.quoteReplacement("<vhostblk:original>" + inner + "</vhostblk:original>"));
        }
        m.appendTail(sb);
        String mangled = sb.toString();
        assertTrue(mangled.contains("<vhostblk:driver"), "test setup");
        RewriteResult r = rewriter.revert(mangled, Set.of());
        assertEquals(XmlSupport.canonical(XmlSupport.parse(original)), XmlSupport.canonical(XmlSupport.parse(r.xml())));
    }

    @Test
    void rejectsWhatItCannotCarry() {
        String xml = corpus("virt-install-debian12.xml").replace("<target dev='vda' bus='virtio'/>",
                "<target dev='vda' bus='virtio'/><shareable/>");
        RewriteResult c = rewriter.convert(xml, ConvertOptions.defaults());
        assertTrue(c.changed().isEmpty());
        assertFalse(c.modified());
        assertThrows(RewriteException.class, () -> rewriter.convert(xml, ConvertOptions.defaults().withTargets(Set.of("vda"))));
        assertThrows(RewriteException.class, () -> rewriter.convert("<network/>", ConvertOptions.defaults()));
        assertThrows(RewriteException.class, () -> rewriter.convert("<domain", ConvertOptions.defaults()));
        assertThrows(RewriteException.class, () -> rewriter.convert(
                "<!DOCTYPE domain [<!ENTITY x SYSTEM 'file:///etc/passwd'>]><domain>&x;</domain>", ConvertOptions.defaults()));
    }
}
