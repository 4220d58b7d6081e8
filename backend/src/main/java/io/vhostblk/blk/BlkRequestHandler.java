package io.vhostblk.blk;

import io.vhostblk.image.BlockImage;
import io.vhostblk.io.IoEngine;
import io.vhostblk.linux.BlockDevice;
import io.vhostblk.linux.Errno;
import io.vhostblk.linux.IoUring;
import io.vhostblk.linux.Libc;
import io.vhostblk.virtq.ChainBuffers;
import io.vhostblk.virtq.ChainError;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static io.vhostblk.blk.BlkRequest.*;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED;

/**
 * Parses virtio-blk requests out of descriptor chains and executes them on an {@link IoEngine}.
 * One instance per worker; it owns the worker's scratch buffers and allocates nothing per
 * request.
 *
 * <p>Layout rules (virtio 1.2 §5.2.6): the first 16 device-readable bytes are the header, the
 * last device-writable byte is the status; data is whatever lies between, in any number of
 * buffers. A chain that cannot be walked is returned with used length 0; a request that is
 * malformed but has a status byte gets {@code VIRTIO_BLK_S_IOERR}; an unknown type gets
 * {@code VIRTIO_BLK_S_UNSUPP}.
 */
public final class BlkRequestHandler implements IoUring.CompletionHandler {
    private static final Logger LOG = LogManager.getLogger(BlkRequestHandler.class);
    private static final int PHASE_NONE = 0;
    private static final int PHASE_ZERO_RANGE = 1;
    private static final int PHASE_PUNCH = 2;

    private final BlkDevice device;
    private final BlockImage image;
    private final IoEngine engine;
    private final BlkQueue[] queues;
    private final MemorySegment scratch;
    private final MemorySegment zeroes;
    private final MemorySegment serial;
    private final int serialLen;
    private final long capacityBytes;
    private final int align;
    private long errorsLogged;
    private long errors;
    private long completed;

    /** @param queues the worker's queues by local index (the array is shared and updated by the worker) */
    public BlkRequestHandler(BlkDevice device, IoEngine engine, BlkQueue[] queues) {
        this.device = device;
        this.image = device.image();
        this.engine = engine;
        this.queues = queues;
        Arena arena = Arena.ofAuto();
        this.scratch = arena.allocate(64, 8);
        this.zeroes = arena.allocate(64 * 1024, 4096);
        byte[] s = device.serial();
        this.serial = arena.allocate(ID_BYTES);
        MemorySegment.copy(s, 0, serial, JAVA_BYTE, 0, s.length);
        this.serialLen = s.length;
        this.capacityBytes = device.capacitySectors() << SECTOR_SHIFT;
        this.align = image.logicalBlockSize();
    }

    /** Requests that did not complete with S_OK (read by the status thread: a statistic, no ordering). */
    public long errors() {
        return errors;
    }

    /** Requests completed, whatever their status. */
    public long completed() {
        return completed;
    }

    /** Takes chain {@code head} off queue {@code q} and starts it. */
    public void start(BlkQueue q, int head) {
        RequestSlot s = q.take();
        if (s == null) {
            // More chains than ring entries in flight: the driver reused a head. Refuse the queue.
            logError("queue " + q.vringIndex + ": more requests in flight than ring entries");
            return;
        }
        q.inflight++;
        if (q.tracking != null) {
            q.tracking.markInflight(head);
        }
        s.head = head;
        s.phase = PHASE_NONE;
        ChainBuffers b = s.buffers;
        int walked = q.ring.walk(head, b);
        if (walked < 0) {
            logError("queue " + q.vringIndex + " head " + head + ": " + ChainError.describe(walked));
            s.statusSeg = null;
            finish(q, s, 0);
            return;
        }
        if (!b.hasWritable()) {
            logError("queue " + q.vringIndex + " head " + head + ": request without a status byte");
            s.statusSeg = null;
            finish(q, s, 0);
            return;
        }
        // Status: the last writable byte.
        int last = b.count() - 1;
        s.statusSeg = b.segment(last);
        s.statusOff = b.offset(last) + b.length(last) - 1;
        b.truncate(last, 1);
        s.usedLen = 1;
        int fw = b.firstWritable();
        int dataEnd = b.length(last) == 0 ? last : b.count();
        if (b.readableBytes() < HEADER_SIZE) {
            complete(q, s, S_IOERR);
            return;
        }
        int dataStart = b.consumeFront(0, fw, scratch, HEADER_SIZE);
        if (dataStart < 0) {
            complete(q, s, S_IOERR);
            return;
        }
        s.type = scratch.get(JAVA_INT_UNALIGNED, 0);
        long sector = scratch.get(JAVA_LONG_UNALIGNED, 8);
        long readableData = b.readableBytes() - HEADER_SIZE;
        long writableData = b.writableBytes() - 1;
        switch (s.type) {
            case T_IN -> {
                s.dataStart = fw;
                s.dataEnd = dataEnd;
                s.length = writableData;
                s.usedLen = (int) Math.min(Integer.MAX_VALUE, writableData + 1);
                if (!rangeOk(sector, writableData)) {
                    complete(q, s, S_IOERR);
                    return;
                }
                s.offset = sector << SECTOR_SHIFT;
                submitRw(q, s, false);
            }
            case T_OUT -> {
                s.dataStart = dataStart;
                s.dataEnd = fw;
                s.length = readableData;
                if (device.readOnly() || !rangeOk(sector, readableData)) {
                    complete(q, s, S_IOERR);
                    return;
                }
                s.offset = sector << SECTOR_SHIFT;
                submitRw(q, s, true);
            }
            case T_FLUSH -> {
                if (device.readOnly()) {
                    complete(q, s, S_OK);
                    return;
                }
                if (!engine.fdatasync(image.dataFd(false), token(q, s))) {
                    complete(q, s, S_IOERR);
                }
            }
            case T_GET_ID -> {
                long n = b.fill(fw, dataEnd, serial, Math.min(ID_BYTES, writableData));
                // NUL-pad the rest of the 20 bytes the driver gave us.
                if (n < Math.min(ID_BYTES, writableData) && serialLen < ID_BYTES) {
                    n = Math.min(ID_BYTES, writableData);
                }
                s.usedLen = (int) n + 1;
                complete(q, s, S_OK);
            }
            case T_DISCARD, T_WRITE_ZEROES -> startDiscardOrZero(q, s, dataStart, fw, readableData);
            default -> complete(q, s, S_UNSUPP);
        }
    }

    private boolean rangeOk(long sector, long bytes) {
        if ((bytes & (SECTOR_SIZE - 1)) != 0 || bytes < 0) {
            return false;
        }
        long sectors = capacityBytes >>> SECTOR_SHIFT;
        return Long.compareUnsigned(sector, sectors) <= 0 && (bytes >>> SECTOR_SHIFT) <= sectors - sector;
    }

    private void submitRw(BlkQueue q, RequestSlot s, boolean write) {
        if (s.length == 0) {
            complete(q, s, S_OK);
            return;
        }
        ChainBuffers b = s.buffers;
        boolean aligned = image.direct() && (s.offset & (align - 1)) == 0;
        for (int i = s.dataStart; aligned && i < s.dataEnd; i++) {
            aligned = ((b.address(i) | b.length(i)) & (align - 1)) == 0;
        }
        s.aligned = aligned;
        if (!issueRw(q, s, write)) {
            complete(q, s, S_IOERR);
        }
    }

    private boolean issueRw(BlkQueue q, RequestSlot s, boolean write) {
        ChainBuffers b = s.buffers;
        int fd = image.dataFd(s.aligned);
        long iov = b.iovAddress(s.dataStart);
        int cnt = s.dataEnd - s.dataStart;
        return write ? engine.writev(fd, iov, cnt, s.offset, !device.writeback(), token(q, s))
                : engine.readv(fd, iov, cnt, s.offset, token(q, s));
    }

    private void startDiscardOrZero(BlkQueue q, RequestSlot s, int dataStart, int fw, long readableData) {
        if (device.readOnly()) {
            complete(q, s, S_IOERR);
            return;
        }
        if (readableData != DWZ_SEGMENT_SIZE) {
            // We advertise max_discard_seg = max_write_zeroes_seg = 1.
            complete(q, s, readableData % DWZ_SEGMENT_SIZE == 0 && readableData > 0 ? S_UNSUPP : S_IOERR);
            return;
        }
        if (s.buffers.consumeFront(dataStart, fw, scratch, DWZ_SEGMENT_SIZE) < 0) {
            complete(q, s, S_IOERR);
            return;
        }
        long sector = scratch.get(JAVA_LONG_UNALIGNED, 0);
        long num = Integer.toUnsignedLong(scratch.get(JAVA_INT_UNALIGNED, 8));
        int flags = scratch.get(JAVA_INT_UNALIGNED, 12);
        boolean discard = s.type == T_DISCARD;
        if ((flags & ~DWZ_FLAG_UNMAP) != 0 || (discard && flags != 0)) {
            complete(q, s, S_UNSUPP);
            return;
        }
        if (num > BlkDevice.MAX_DWZ_SECTORS || !rangeOk(sector, num << SECTOR_SHIFT)) {
            complete(q, s, S_IOERR);
            return;
        }
        s.offset = sector << SECTOR_SHIFT;
        s.length = num << SECTOR_SHIFT;
        if (s.length == 0) {
            complete(q, s, S_OK);
            return;
        }
        int fd = image.dataFd(false);
        if (discard && image.isBlockDevice()) {
            // BLKDISCARD has no io_uring opcode on older kernels; it is rare and quick.
            int r = BlockDevice.discardRaw(fd, s.offset, s.length, scratch);
            complete(q, s, r == 0 || r == -Errno.EOPNOTSUPP ? S_OK : S_IOERR);
            return;
        }
        boolean queued;
        if (discard) {
            s.phase = PHASE_PUNCH;
            queued = engine.discard(fd, s.offset, s.length, token(q, s));
        } else {
            boolean unmap = (flags & DWZ_FLAG_UNMAP) != 0;
            s.phase = unmap ? PHASE_PUNCH : PHASE_ZERO_RANGE;
            queued = engine.writeZeroes(fd, s.offset, s.length, unmap, token(q, s));
        }
        if (!queued) {
            complete(q, s, S_IOERR);
        }
    }

    private static long token(BlkQueue q, RequestSlot s) {
        return ((long) q.localIndex << 32) | s.index;
    }

    @Override
    public void onCompletion(long token, int res) {
        BlkQueue q = queues[(int) (token >>> 32)];
        RequestSlot s = q.slots[(int) token];
        switch (s.type) {
            case T_IN, T_OUT -> completeRw(q, s, res);
            case T_DISCARD, T_WRITE_ZEROES -> completeDiscardOrZero(q, s, res);
            default -> {
                if (res < 0) {
                    logError("flush failed: " + Libc.strerror(-res));
                }
                complete(q, s, res < 0 ? S_IOERR : S_OK);
            }
        }
    }

    private void completeRw(BlkQueue q, RequestSlot s, int res) {
        boolean write = s.type == T_OUT;
        if (res == -Errno.EINVAL && s.aligned) {
            // O_DIRECT refused this layout (host block size larger than the guest's): go buffered.
            s.aligned = false;
            if (issueRw(q, s, write)) {
                return;
            }
        }
        if (res == -Errno.EINTR || res == -Errno.EAGAIN) {
            if (issueRw(q, s, write)) {
                return;
            }
        }
        if (res < 0) {
            logError((write ? "write" : "read") + " of " + s.length + " bytes at " + s.offset + ": " + Libc.strerror(-res));
            complete(q, s, S_IOERR);
            return;
        }
        if (res < s.length && res > 0) {
            // Short transfer: skip what was done and issue the rest.
            long left = res;
            ChainBuffers b = s.buffers;
            while (left > 0 && s.dataStart < s.dataEnd) {
                long n = Math.min(left, b.length(s.dataStart));
                b.advance(s.dataStart, n);
                left -= n;
                if (b.length(s.dataStart) == 0) {
                    s.dataStart++;
                }
            }
            s.offset += res;
            s.length -= res;
            if (issueRw(q, s, write)) {
                return;
            }
            complete(q, s, S_IOERR);
            return;
        }
        if (res == 0 && s.length > 0) {
            logError((write ? "write" : "read") + " at " + s.offset + " made no progress (image shrank?)");
            complete(q, s, S_IOERR);
            return;
        }
        complete(q, s, S_OK);
    }

    private void completeDiscardOrZero(BlkQueue q, RequestSlot s, int res) {
        if (res >= 0) {
            complete(q, s, S_OK);
            return;
        }
        boolean unsupported = res == -Errno.EOPNOTSUPP || res == -Errno.EINVAL || res == -Errno.ENOSYS;
        if (unsupported && s.type == T_DISCARD) {
            complete(q, s, S_OK); // discard is a hint: nothing to do where the host cannot punch holes
            return;
        }
        int fd = image.dataFd(false);
        if (unsupported && s.phase == PHASE_ZERO_RANGE) {
            // The host cannot zero in place (tmpfs): a hole reads as zeroes too.
            s.phase = PHASE_PUNCH;
            if (engine.writeZeroes(fd, s.offset, s.length, true, token(q, s))) {
                return;
            }
        }
        if (unsupported && fd >= 0) {
            complete(q, s, writeZeroes(fd, s.offset, s.length) ? S_OK : S_IOERR);
            return;
        }
        logError("fallocate at " + s.offset + ": " + Libc.strerror(-res));
        complete(q, s, S_IOERR);
    }

    /** Last resort for WRITE_ZEROES on hosts without fallocate support: write zero buffers. */
    private boolean writeZeroes(int fd, long offset, long len) {
        try {
            for (long done = 0; done < len; ) {
                long n = Math.min(zeroes.byteSize(), len - done);
                Libc.pwrite(fd, zeroes, n, offset + done);
                done += n;
            }
            return true;
        } catch (RuntimeException e) {
            logError("writing zeroes at " + offset + ": " + e.getMessage());
            return false;
        }
    }

    private void complete(BlkQueue q, RequestSlot s, byte status) {
        if (status != S_OK) {
            errors++;
        }
        s.statusSeg.set(JAVA_BYTE, s.statusOff, status);
        finish(q, s, s.usedLen);
    }

    private void finish(BlkQueue q, RequestSlot s, int usedLen) {
        q.ring.addUsed(s.head, usedLen);
        if (q.tracking != null) {
            q.batch[q.batchCount++] = s.head;
        }
        q.dirty = true;
        q.inflight--;
        q.completed++;
        completed++;
        q.release(s);
    }

    private void logError(String msg) {
        errorsLogged++;
        if (errorsLogged <= 20 || errorsLogged % 1000 == 0) {
            LOG.warn("{} (error #{})", msg, errorsLogged);
        }
    }
}
