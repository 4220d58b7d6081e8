package io.vhostblk.plugin.daemon;

/** A libvirt domain as the daemon knows it: by UUID when it has one, else by name. */
public record DomainRef(String name, String uuid) {
    public String key() {
        return uuid != null && !uuid.isBlank() ? uuid.toLowerCase() : "name:" + name;
    }

    @Override
    public String toString() {
        return name;
    }
}
