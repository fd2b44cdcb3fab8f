import TulipPlugins
import TulipTestPlugins
import TulipdCLI

/// `tulipd-test`: `tulipd` plus the test-only plugins of ``TulipTestPlugins`` (`block-loop`), for
/// the real-systemd tests. Never installed: the shipped `tulipd` cannot block its own loop.
@main
enum TulipdTest {
    static func main() {
        var registry = TulipPlugins.makeRegistry()
        TulipTestPlugins.register(into: &registry)
        TulipdCommand.main(registry: registry)
    }
}
