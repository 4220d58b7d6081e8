package io.vhostblk.control;

/** A snapshot of what a backend is doing, as the control socket reports it. */
public record BackendStatus(long pid, String image, String format, String socket, boolean connected, long connections,
                            int queues, long uptimeSeconds, long requests, long errors) {

    /** One JSON object on one line (the control-socket contract the plugin reads). */
    public String toJson() {
        return "{\"pid\":" + pid + ",\"image\":" + Json.quote(image) + ",\"format\":" + Json.quote(format)
                + ",\"socket\":" + Json.quote(socket) + ",\"connected\":" + connected + ",\"connections\":" + connections
                + ",\"queues\":" + queues + ",\"uptime_s\":" + uptimeSeconds + ",\"requests\":" + requests
                + ",\"errors\":" + errors + "}";
    }
}
