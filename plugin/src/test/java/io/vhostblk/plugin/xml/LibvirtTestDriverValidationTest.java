package io.vhostblk.plugin.xml;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * libvirt's own validation as the oracle: every converted corpus domain must be accepted by
 * {@code virsh define} on the in-process test driver (test:///default), which runs
 * virDomainDiskVhostUserValidate (serial, readonly, cache, ... refused on vhostuser disks).
 * Skipped where virsh is not installed.
 */
class LibvirtTestDriverValidationTest {

    @ParameterizedTest
    @ValueSource(strings = {"virt-install-debian12.xml", "numa-cells.xml", "hugepages.xml", "cdrom-scsi.xml", "cloudstack-serial.xml"})
    void libvirtAcceptsTheConvertedDomain(String file) throws Exception {
        assumeTrue(Files.isExecutable(Path.of("/usr/bin/virsh")), "virsh not installed");
        String converted = new DomainXmlRewriter().convert(DomainXmlRewriterTest.corpus(file), ConvertOptions.defaults()).xml();
        Path f = Files.createTempFile("vhostblk-conv", ".xml");
        try {
            Files.writeString(f, converted);
            String out = virsh("define " + f);
            assertEquals(true, out.contains("defined from"), out);
            // a rejected option would have failed the define; check the control case too
            int devices = converted.indexOf("<devices>");
            Files.writeString(f, converted.substring(0, devices) + converted.substring(devices).replaceFirst(
                    "(<source path=\"[^\"]+\" type=\"unix\">)", "<serial>x</serial>$1"));
            String bad = virsh("define " + f);
            assertEquals(true, bad.contains("serial is not supported with vhostuser disk"), bad);
        } finally {
            Files.deleteIfExists(f);
        }
    }

    private static String virsh(String cmd) throws IOException, InterruptedException {
        Process p = new ProcessBuilder("virsh", "-c", "test:///default", cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        p.waitFor(30, TimeUnit.SECONDS);
        return out;
    }
}
