import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A stand-in for bin/vhostblk-backend in the supervisor's unit tests (run as a single-file
 * source program). Listens on --socket-path; answers the control-socket contract on
 * --control-socket; FAKE_MODE=fail exits at once with an error line, FAKE_MODE=crash exits 3
 * after FAKE_CRASH_MS. --help lists --control-socket.
 */
public class FakeBackend {
    public static void main(String[] a) throws Exception {
        if (a.length > 0 && a[0].equals("--help")) {
            System.out.println("usage: fake --socket-path PATH --control-socket PATH");
            return;
        }
        String sock = null, ctl = null, image = null;
        for (int i = 0; i < a.length - 1; i++) {
            switch (a[i]) {
                case "--socket-path" -> sock = a[i + 1];
                case "--control-socket" -> ctl = a[i + 1];
                case "--blk-file" -> image = a[i + 1];
                default -> { }
            }
        }
        String mode = System.getenv().getOrDefault("FAKE_MODE", "ok");
        if (image != null && image.endsWith("missing.raw")) {
            System.err.println("vhostblk-backend: " + image + ": No such file or directory");
            System.exit(1);
        }
        ServerSocketChannel s = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        Files.deleteIfExists(Path.of(sock));
        s.bind(UnixDomainSocketAddress.of(sock));
        System.err.println("fake listening on " + sock);
        if (image != null && image.endsWith("crash.raw")) {
            Thread.sleep(300);
            System.err.println("fake crashing");
            System.exit(3);
        }
        long start = System.currentTimeMillis();
        String imageF = image, sockF = sock;
        if (ctl != null) {
            ServerSocketChannel c = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
            Files.deleteIfExists(Path.of(ctl));
            c.bind(UnixDomainSocketAddress.of(ctl));
            Thread.ofPlatform().daemon(true).start(() -> {
                while (true) {
                    try (SocketChannel ch = c.accept()) {
                        ch.read(ByteBuffer.allocate(64));
                        String j = "{\"pid\":" + ProcessHandle.current().pid() + ",\"image\":\"" + imageF + "\",\"format\":\"raw\",\"socket\":\""
                                + sockF + "\",\"connected\":false,\"connections\":0,\"queues\":1,\"uptime_s\":"
                                + (System.currentTimeMillis() - start) / 1000 + ",\"requests\":42,\"errors\":0}\n";
                        ch.write(ByteBuffer.wrap(j.getBytes(StandardCharsets.UTF_8)));
                    } catch (Exception e) {
                        return;
                    }
                }
            });
        }
        while (true) {
            s.accept().close();
        }
    }
}
