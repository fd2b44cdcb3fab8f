import TulipPlugins
import TulipdCLI

/// The shipped daemon: the command with the built-in plugins and nothing else.
@main
enum Tulipd {
    static func main() {
        TulipdCommand.main(registry: TulipPlugins.makeRegistry())
    }
}
