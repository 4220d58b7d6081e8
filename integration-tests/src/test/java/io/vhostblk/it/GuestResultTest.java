package io.vhostblk.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;

class GuestResultTest {
    private static GuestResult parse(String text, int exit) {
        return GuestResult.parse(text, exit, Path.of("console.log"), Duration.ofSeconds(1));
    }

    @Test
    void parsesResultsAndDone() {
        GuestResult r = parse("""
                SeaBIOS\r
                \u001b[2Jvhostblk-guest: loading\r
                VHOSTBLK-RESULT test=fio\r
                VHOSTBLK-RESULT iops_read=1234\r
                [   3.1] some kernel line VHOSTBLK-RESULT write_cache=write_back\r
                VHOSTBLK-RESULT empty=\r
                VHOSTBLK-DONE rc=0\r
                [   4.0] reboot: Power down\r
                """, 0);
        assertTrue(r.succeeded());
        assertEquals("fio", r.get("test"));
        assertEquals(1234, r.getLong("iops_read"));
        assertEquals("write_back", r.get("write_cache"));
        assertEquals("", r.get("empty"));
        assertEquals(0, r.doneRc().getAsInt());
        assertThrows(AssertionError.class, () -> r.get("missing"));
    }

    @Test
    void repeatedKeysKeepAllEntriesAndLastValue() {
        GuestResult r = parse("""
                VHOSTBLK-RESULT boot_count=1
                VHOSTBLK-RESULT boot_count=2
                VHOSTBLK-DONE rc=0
                """, 0);
        assertEquals("2", r.get("boot_count"));
        assertEquals(2, r.entries().stream().filter(e -> e.getKey().equals("boot_count")).count());
    }

    @Test
    void failureWhenDoneMissingNonZeroOrDuplicated() {
        assertFalse(parse("VHOSTBLK-RESULT a=1\n", 0).succeeded());
        assertFalse(parse("VHOSTBLK-DONE rc=1\n", 0).succeeded());
        assertFalse(parse("VHOSTBLK-DONE rc=0\n", 1).succeeded());
        GuestResult twice = parse("VHOSTBLK-DONE rc=0\nVHOSTBLK-DONE rc=0\n", 0);
        assertFalse(twice.succeeded());
        assertEquals(2, twice.doneCount());
        assertThrows(AssertionError.class, twice::assertSuccess);
    }

    @Test
    void qemuCommandLine() {
        QemuGuest g = QemuGuest.builder()
                .image(new GuestImage(Path.of("/boot/vmlinuz-x"), Path.of("/tmp/initrd.gz")))
                .test("fio").arg("iodepth", 32).arg("size", "32M")
                .socket(Path.of("/tmp/a,b/vub.sock")).numQueues(4).queueSize(1024).eventIdx(false)
                .packed(true).configWce(true).reconnect(true).smp(4)
                .logFile(Path.of("x.log")).build();
        String cmd = String.join(" ", g.command());
        assertTrue(cmd.contains("-machine q35,accel=tcg -cpu max -smp 4 -m 512M"), cmd);
        assertTrue(cmd.contains("-object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem"), cmd);
        assertTrue(cmd.contains("vhostblk.test=fio vhostblk.args=iodepth:32,size:32M"), cmd);
        assertTrue(cmd.contains("-no-reboot"), cmd);
        assertTrue(cmd.contains("-chardev socket,id=vub0,path=/tmp/a,,b/vub.sock,reconnect=1"), cmd);
        assertTrue(cmd.contains("-device vhost-user-blk-pci,chardev=vub0,num-queues=4,queue-size=1024,"
                + "event_idx=off,packed=on,config-wce=on"), cmd);
        assertThrows(IllegalArgumentException.class, () -> QemuGuest.builder().arg("k", "a,b"));
    }
}
