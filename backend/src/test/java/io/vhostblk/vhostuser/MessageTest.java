package io.vhostblk.vhostuser;

import org.junit.jupiter.api.Test;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The {@link Message} flyweight: header layout and bounds-checked payload access. */
class MessageTest {

    static int rawByte(Message m, int off) {
        return Byte.toUnsignedInt(m.buf.get(JAVA_BYTE, off));
    }

    @Test
    void headerFieldsAreLittleEndianU32sAtZeroFourEight() {
        Message m = new Message().begin(Request.GET_CONFIG, Message.FLAG_NEED_REPLY).size(0x0102);
        assertEquals(Request.GET_CONFIG, m.request());
        assertEquals(Message.VERSION | Message.FLAG_NEED_REPLY, m.flags(), "begin() adds the version");
        assertEquals(0x0102, m.size());
        assertTrue(m.needReply());
        int[] expect = {24, 0, 0, 0, 0x09, 0, 0, 0, 0x02, 0x01, 0, 0};
        for (int i = 0; i < expect.length; i++) {
            assertEquals(expect[i], rawByte(m, i), "header byte " + i);
        }
        Message reply = new Message().begin(Request.GET_FEATURES, Message.FLAG_REPLY);
        assertEquals(0, reply.size());
        assertFalse(reply.needReply());
        assertEquals(Message.VERSION | Message.FLAG_REPLY, reply.flags());
        assertEquals(Message.VERSION, reply.flags() & Message.FLAG_VERSION_MASK);
    }

    @Test
    void beginResetsSizeAndFds() {
        Message m = new Message().begin(Request.SET_VRING_KICK, 0).size(8).attachFd(5);
        assertEquals(1, m.fdCount());
        m.begin(Request.GET_FEATURES, 0);
        assertEquals(0, m.size());
        assertEquals(0, m.fdCount());
    }

    @Test
    void u64AndU32ReadWhatWasPutAtAnyOffset() {
        Message m = new Message().begin(Request.SET_VRING_ADDR, 0).size(40);
        m.putU32(0, 0xCAFEBABE);
        m.putU64(8, 0x1122334455667788L);
        m.putU64(12, 0x0123456789ABCDEFL); // overlaps the high half of the u64 at 8
        assertEquals(0xCAFEBABE, m.u32(0));
        assertEquals(0x0123456789ABCDEFL, m.u64(12));
        assertEquals(0x55667788, m.u32(8), "low half of the u64 at 8 survives the overlapping write at 12");
        assertEquals(0xEF, rawByte(m, Message.HEADER_SIZE + 12), "little endian");
        assertEquals(0x01, rawByte(m, Message.HEADER_SIZE + 19));
        m.putU64(31, -2L);
        assertEquals(-2L, m.u64(31));
        assertThrows(ProtocolException.class, () -> m.u64(33), "33 + 8 > 40");
    }

    @Test
    void u64AtWireOffset12IsUnalignedAndWorks() {
        // The payload starts right after the 12-byte header, so a u64 payload (SET_FEATURES,
        // SET_PROTOCOL_FEATURES, ...) sits at wire offset 12: 4 bytes off 8-byte alignment.
        Message m = new Message().begin(Request.SET_FEATURES, 0).size(8);
        assertEquals(4, (m.buf.address() + Message.HEADER_SIZE) % 8, "payload offset 0 is misaligned for a u64");
        m.putU64(0, 0x8000_0001_4000_0000L);
        assertEquals(0x8000_0001_4000_0000L, m.u64(0));
        assertEquals(0x00, rawByte(m, 12));
        assertEquals(0x40, rawByte(m, 15));
        assertEquals(0x80, rawByte(m, 19));
        // And the config payload of GET/SET_CONFIG: u32 offset, size, flags, then data at 12.
        Message c = new Message().begin(Request.SET_CONFIG, 0).size(20);
        c.putU64(12, 0xFEDCBA9876543210L);
        assertEquals(0xFEDCBA9876543210L, c.u64(12));
        assertThrows(ProtocolException.class, () -> c.u64(13));
    }

    @Test
    void accessorsRefuseFieldsBeyondTheReceivedSize() {
        Message m = new Message().begin(Request.SET_VRING_NUM, 0).size(8);
        m.putU64(0, 42);
        assertEquals(42, m.u64(0));
        assertEquals(42, m.u32(0));
        assertEquals(0, m.u32(4));
        assertThrows(ProtocolException.class, () -> m.u64(1));
        assertThrows(ProtocolException.class, () -> m.u64(8));
        assertThrows(ProtocolException.class, () -> m.u32(5));
        assertThrows(ProtocolException.class, () -> m.u32(-1));
        assertThrows(ProtocolException.class, () -> m.payload(0, 9));
        assertThrows(ProtocolException.class, () -> m.payload(-4, 4));
        assertEquals(8, m.payload(0, 8).byteSize());
        assertEquals(0, m.payload(8, 0).byteSize());
        ProtocolException e = assertThrows(ProtocolException.class, () -> m.u64(4));
        assertTrue(e.getMessage().contains("SET_VRING_NUM"), e.getMessage());

        Message empty = new Message().begin(Request.GET_FEATURES, 0);
        assertThrows(ProtocolException.class, () -> empty.u32(0), "no payload at all");
    }

    @Test
    void stalePayloadIsNotReadableAfterAShorterMessage() {
        Message m = new Message().begin(Request.SET_FEATURES, 0).size(8);
        m.putU64(0, 0xFFFF_FFFFL);
        m.begin(Request.SET_OWNER, 0);
        assertThrows(ProtocolException.class, () -> m.u64(0));
    }

    @Test
    void sizeChecks() {
        Message m = new Message().begin(Request.SET_MEM_TABLE, 0);
        assertThrows(ProtocolException.class, () -> m.size(-1));
        assertThrows(ProtocolException.class, () -> m.size(Message.MAX_PAYLOAD + 1));
        m.size(Message.MAX_PAYLOAD);
        assertEquals(Message.MAX_PAYLOAD, m.size());
        m.size(12);
        m.requireSize(12);
        m.requireSizeAtLeast(12);
        m.requireSizeAtLeast(8);
        assertThrows(ProtocolException.class, () -> m.requireSize(8));
        assertThrows(ProtocolException.class, () -> m.requireSize(16));
        assertThrows(ProtocolException.class, () -> m.requireSizeAtLeast(13));
    }

    @Test
    void fdAccessors() {
        Message m = new Message().begin(Request.SET_VRING_CALL, 0);
        ProtocolException e = assertThrows(ProtocolException.class, () -> m.fd(0));
        assertTrue(e.getMessage().contains("SET_VRING_CALL"), e.getMessage());
        m.attachFd(7).attachFd(9);
        assertEquals(2, m.fdCount());
        assertEquals(7, m.fd(0));
        assertEquals(9, m.fd(1));
        assertThrows(ProtocolException.class, () -> m.fd(2));
        assertEquals(9, m.takeFd(1));
        assertEquals(-1, m.fd(1), "taken fds are no longer owned by the message");
    }

    @Test
    void requestNames() {
        assertEquals("SET_MEM_TABLE", Request.name(5));
        assertEquals("GET_STATUS", Request.name(40));
        assertEquals("UNKNOWN(99)", Request.name(99));
        assertEquals("UNKNOWN(-1)", Request.name(-1));
        assertEquals("UNKNOWN(26)", Request.name(26));
        assertEquals("GET_CONFIG(flags=0x1, size=0, fds=0)", new Message().begin(Request.GET_CONFIG, 0).toString());
    }
}
