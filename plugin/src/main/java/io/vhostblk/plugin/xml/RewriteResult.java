package io.vhostblk.plugin.xml;

import java.util.List;

/**
 * Outcome of a convert or revert.
 *
 * @param xml      the rewritten domain XML (the input string itself when nothing changed)
 * @param modified whether {@code xml} differs from the input
 * @param changed  disk targets that were converted (or reverted) by this call
 * @param skipped  one line per disk left alone, with the reason
 * @param warnings what the operator should know (options dropped or mapped approximately, ...)
 */
public record RewriteResult(String xml, boolean modified, List<String> changed, List<String> skipped,
                            List<String> warnings) {
    public RewriteResult {
        changed = List.copyOf(changed);
        skipped = List.copyOf(skipped);
        warnings = List.copyOf(warnings);
    }
}
