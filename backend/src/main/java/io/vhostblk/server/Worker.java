package io.vhostblk.server;

import io.vhostblk.blk.BlkDevice;
import io.vhostblk.blk.BlkQueue;
import io.vhostblk.blk.BlkRequestHandler;
import io.vhostblk.io.IoEngine;
import io.vhostblk.linux.Epoll;
import io.vhostblk.linux.EventFd;
import io.vhostblk.linux.Libc;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * One data-plane thread: it owns some virtqueues, an I/O engine and an epoll set over the
 * queues' kick eventfds, the engine's completion eventfd and its own wake-up eventfd.
 *
 * <p>Duty cycle: run control commands; pop every available chain of every enabled queue and
 * start it; submit the batch; reap completions; publish used rings and signal each queue's call
 * eventfd once if the driver asked for it. With nothing to do it optionally busy-polls for
 * {@code pollUs}, then re-enables guest notifications, re-checks the rings and sleeps in epoll.
 *
 * <p>The control thread talks to a worker only through {@link #execute}: commands run on the
 * worker thread between duty cycles, so queue state needs no locks. Nothing on the I/O path
 * allocates.
 */
public final class Worker implements Runnable {
    private static final Logger LOG = LogManager.getLogger(Worker.class);
    static final int MAX_QUEUES = 256;
    private static final long TOKEN_WAKE = -1;
    private static final long TOKEN_ENGINE = -2;

    private final int id;
    private final IoEngine engine;
    private final BlkRequestHandler handler;
    private final BlkQueue[] queues = new BlkQueue[MAX_QUEUES];
    private final boolean[] stopping = new boolean[MAX_QUEUES];
    @SuppressWarnings("unchecked")
    private final CompletableFuture<Integer>[] stopFutures = new CompletableFuture[MAX_QUEUES];
    private final Vring[] vrings = new Vring[MAX_QUEUES];
    private final boolean[] brokenReported = new boolean[MAX_QUEUES];
    private int highWater;
    private final Epoll epoll;
    private final int wakeFd;
    private final ConcurrentLinkedQueue<Runnable> commands = new ConcurrentLinkedQueue<>();
    private final long pollNs;
    private final Thread thread;
    private volatile boolean running = true;
    private int unkickedQueues;

    public Worker(int id, BlkDevice device, IoEngine engine, long pollUs, String name) {
        this.id = id;
        this.engine = engine;
        this.handler = new BlkRequestHandler(device, engine, queues);
        this.pollNs = pollUs * 1000;
        this.epoll = new Epoll(MAX_QUEUES + 2);
        this.wakeFd = EventFd.create();
        epoll.add(wakeFd, Epoll.EPOLLIN, TOKEN_WAKE);
        epoll.add(engine.completionFd(), Epoll.EPOLLIN, TOKEN_ENGINE);
        this.thread = Thread.ofPlatform().name(name + "-worker-" + id).unstarted(this);
    }

    public void start() {
        thread.start();
    }

    public int id() {
        return id;
    }

    public long errors() {
        return handler.errors();
    }

    public long requests() {
        return handler.completed();
    }

    /** Runs {@code command} on the worker thread; the future completes when it has run. */
    CompletableFuture<Void> execute(Runnable command) {
        CompletableFuture<Void> f = new CompletableFuture<>();
        commands.add(() -> {
            try {
                command.run();
                f.complete(null);
            } catch (Throwable t) {
                f.completeExceptionally(t);
            }
        });
        EventFd.signal(wakeFd);
        return f;
    }

    /** Wakes the worker so it re-reads queue flags (enable) and rings. */
    void wake() {
        EventFd.signal(wakeFd);
    }

    /** Starts serving {@code q} (ring started). */
    CompletableFuture<Void> attach(Vring v, BlkQueue q) {
        return execute(() -> {
            int slot = -1;
            for (int i = 0; i < MAX_QUEUES; i++) {
                if (queues[i] == null) {
                    slot = i;
                    break;
                }
            }
            if (slot < 0) {
                throw new IllegalStateException("worker " + id + " serves too many queues");
            }
            q.setLocalIndex(slot);
            queues[slot] = q;
            vrings[slot] = v;
            stopping[slot] = false;
            brokenReported[slot] = false;
            highWater = Math.max(highWater, slot + 1);
            if (q.kickFd() >= 0) {
                epoll.add(q.kickFd(), Epoll.EPOLLIN, slot);
            } else {
                unkickedQueues++;
            }
            int[] resubmit = q.resubmitList();
            if (resubmit.length > 0) {
                LOG.info("queue {}: resubmitting {} request(s) left in flight by the previous backend", v.index, resubmit.length);
                for (int head : resubmit) {
                    handler.start(q, head);
                }
            }
        });
    }

    /**
     * Stops taking requests from {@code q}; completes with the ring's next avail index once every
     * request in flight has completed and been published (GET_VRING_BASE semantics).
     */
    CompletableFuture<Integer> detach(BlkQueue q) {
        CompletableFuture<Integer> f = new CompletableFuture<>();
        execute(() -> {
            int i = q.localIndex();
            stopping[i] = true;
            stopFutures[i] = f;
        }).exceptionally(t -> {
            f.completeExceptionally(t);
            return null;
        });
        return f;
    }

    private void finishDetach(int i) {
        BlkQueue q = queues[i];
        q.flushUsed();
        if (q.kickFd() >= 0) {
            epoll.remove(q.kickFd());
        } else {
            unkickedQueues--;
        }
        queues[i] = null;
        vrings[i] = null;
        stopping[i] = false;
        CompletableFuture<Integer> f = stopFutures[i];
        stopFutures[i] = null;
        while (highWater > 0 && queues[highWater - 1] == null) {
            highWater--;
        }
        f.complete(q.ring().lastAvail());
    }

    /** Ends the thread after the current cycle; queues must have been detached. */
    void shutdown() {
        running = false;
        EventFd.signal(wakeFd);
        try {
            thread.join(10_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        engine.close();
        epoll.close();
        Libc.closeQuietly(wakeFd);
    }

    @Override
    public void run() {
        try {
            loop();
        } catch (Throwable t) {
            LOG.error("worker {} failed; its queues stop", id, t);
            for (int i = 0; i < MAX_QUEUES; i++) {
                if (stopFutures[i] != null) {
                    stopFutures[i].completeExceptionally(t);
                }
            }
            // Keep answering commands so the control thread can tear down: queues are dropped
            // at once (their requests can no longer complete).
            while (running) {
                Runnable r = commands.poll();
                if (r != null) {
                    r.run();
                    for (int i = 0; i < MAX_QUEUES; i++) {
                        if (stopFutures[i] != null) {
                            stopFutures[i].completeExceptionally(t);
                            stopFutures[i] = null;
                            queues[i] = null;
                        }
                    }
                } else {
                    epoll.await(100);
                    EventFd.drain(wakeFd);
                }
            }
        }
    }

    private void loop() {
        long idleSince = 0;
        while (running) {
            Runnable r;
            while ((r = commands.poll()) != null) {
                r.run();
            }
            int work = 0;
            for (int i = 0; i < highWater; i++) {
                BlkQueue q = queues[i];
                if (q == null || stopping[i] || !vrings[i].enabled) {
                    continue;
                }
                int n = q.ring().pending();
                if (q.ring().isBroken()) {
                    reportBroken(i);
                    continue;
                }
                if (n > 0) {
                    q.ring().disableNotification();
                }
                for (; n > 0; n--) {
                    handler.start(q, q.ring().popHead());
                    work++;
                }
            }
            engine.submit();
            work += engine.reap(handler);
            for (int i = 0; i < highWater; i++) {
                BlkQueue q = queues[i];
                if (q == null) {
                    continue;
                }
                q.flushUsed();
                if (stopping[i] && q.inflight() == 0) {
                    finishDetach(i);
                }
            }
            if (work > 0) {
                idleSince = 0;
                continue;
            }
            if (pollNs > 0) {
                long now = System.nanoTime();
                if (idleSince == 0) {
                    idleSince = now;
                }
                if (now - idleSince < pollNs) {
                    Thread.onSpinWait();
                    continue;
                }
            }
            idleSince = 0;
            boolean more = false;
            boolean anyInflight = false;
            for (int i = 0; i < highWater; i++) {
                BlkQueue q = queues[i];
                if (q == null) {
                    continue;
                }
                anyInflight |= q.inflight() > 0;
                if (!stopping[i] && vrings[i].enabled && !q.ring().isBroken()) {
                    more |= q.ring().enableNotification();
                }
            }
            if (more || !commands.isEmpty()) {
                continue;
            }
            int timeout = unkickedQueues > 0 ? 1 : -1;
            int ready = epoll.await(timeout);
            for (int e = 0; e < ready; e++) {
                long token = epoll.token(e);
                if (token == TOKEN_WAKE) {
                    EventFd.drain(wakeFd);
                } else if (token == TOKEN_ENGINE) {
                    EventFd.drain(engine.completionFd());
                } else {
                    BlkQueue q = queues[(int) token];
                    if (q != null) {
                        EventFd.drain(q.kickFd());
                    }
                }
            }
            if (anyInflight && ready == 0) {
                Thread.onSpinWait();
            }
        }
    }

    private void reportBroken(int i) {
        if (brokenReported[i]) {
            return;
        }
        brokenReported[i] = true;
        Vring v = vrings[i];
        LOG.error("queue {}: the driver published more entries than the ring holds; queue stopped until reset", v.index);
        int err = v.errFd;
        if (err >= 0) {
            EventFd.signal(err);
        }
    }
}
