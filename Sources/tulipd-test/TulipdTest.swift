import TulipPlugins
import TulipTestPlugins
import TulipdCLI

/// The test-only daemon: `tulipd` plus the plugins of ``TulipTestPlugins`` (`block-loop`).
///
/// For the real-systemd tests; never installed: the shipped `tulipd` cannot block its own loop.
@main
enum TulipdTest {
    static func main() {
        var registry = TulipPlugins.makeRegistry()
        TulipTestPlugins.register(into: &registry)
        TulipdCommand.main(registry: registry)
    }
}
