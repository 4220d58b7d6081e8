package io.vhostblk.fuzz;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Writes the seed corpora into the source tree, in Jazzer's layout
 * ({@code src/test/resources/io/vhostblk/fuzz/<Class>Inputs/<method>/<seed>}). Run after changing
 * an input format or a seed (see FUZZING.md):
 * <pre>
 *   mvn -pl backend test-compile
 *   java -cp backend/target/test-classes:backend/target/classes --enable-native-access=ALL-UNNAMED \
 *        io.vhostblk.fuzz.FuzzSeeds backend/src/test/resources
 * </pre>
 * {@link FuzzSeedsTest} fails while the checked-in files differ from what this writes.
 */
public final class FuzzSeeds {
    private FuzzSeeds() {
    }

    /** Every seed by its resource path relative to this package. */
    static Map<String, byte[]> all() {
        Map<String, byte[]> m = new LinkedHashMap<>();
        SplitChainSeeds.all().forEach((k, v) -> m.put("SplitChainFuzzTestInputs/splitChains/" + k, v));
        VhostUserMessageSeeds.all().forEach((k, v) -> m.put("VhostUserMessageFuzzTestInputs/messageSequences/" + k, v));
        return m;
    }

    public static void main(String[] args) throws IOException {
        Path root = Path.of(args.length > 0 ? args[0] : "src/test/resources").resolve("io/vhostblk/fuzz");
        for (Map.Entry<String, byte[]> e : all().entrySet()) {
            Path p = root.resolve(e.getKey());
            Files.createDirectories(p.getParent());
            Files.write(p, e.getValue());
            System.out.println(p + " (" + e.getValue().length + " bytes)");
        }
    }
}
