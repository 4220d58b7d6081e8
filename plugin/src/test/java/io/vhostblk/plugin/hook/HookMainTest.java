package io.vhostblk.plugin.hook;

import io.vhostblk.plugin.config.PluginConfig;
import io.vhostblk.plugin.xml.ConvertOptions;
import io.vhostblk.plugin.xml.DomainXmlRewriter;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Properties;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The hook without a daemon: refuses to start converted domains, never blocks anything else. */
class HookMainTest {
    static String corpus(String name) throws IOException {
        try (InputStream in = HookMainTest.class.getResourceAsStream("/domains/" + name)) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    int hook(PluginConfig cfg, String xml, ByteArrayOutputStream err, String... args) throws IOException {
        return HookMain.run(cfg, args, new ByteArrayInputStream(xml.getBytes(StandardCharsets.UTF_8)),
                new PrintStream(err, true, StandardCharsets.UTF_8));
    }

    @Test
    void daemonDown() throws Exception {
        Path dir = Files.createTempDirectory("vbhook");
        Properties p = new Properties();
        p.setProperty("run.dir", dir.toString());
        PluginConfig cfg = PluginConfig.from(dir.resolve("x.conf"), p);
        String plain = corpus("virt-install-debian12.xml");
        String converted = new DomainXmlRewriter().convert(plain, ConvertOptions.defaults().withSocketDir(cfg.socketDir().toString())).xml();

        ByteArrayOutputStream err = new ByteArrayOutputStream();
        assertEquals(1, hook(cfg, converted, err, "debian12", "prepare", "begin", "-"));
        assertTrue(err.toString().contains("the vhostblk daemon is not reachable") && err.toString().contains("Refusing to start"),
                err.toString());

        // domains vhostblk does not serve, other operations, and teardown never fail
        assertEquals(0, hook(cfg, plain, new ByteArrayOutputStream(), "debian12", "prepare", "begin", "-"));
        assertEquals(0, hook(cfg, converted, new ByteArrayOutputStream(), "debian12", "start", "begin", "-"));
        assertEquals(0, hook(cfg, converted, new ByteArrayOutputStream(), "debian12", "release", "end", "destroyed"));
        assertEquals(0, hook(cfg, converted, new ByteArrayOutputStream(), "debian12", "reconnect", "begin", "-"));
        assertEquals(0, hook(cfg, converted, new ByteArrayOutputStream(), "debian12", "migrate", "begin", "-"));
        Files.delete(dir);
    }
}
