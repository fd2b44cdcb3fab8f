import NIOCore
import Testing
import Tulip
import TulipDaemon
import TulipPlugins
import TulipTestKit

// The plugin of README.md's "Writing a protocol plugin", verbatim, so the example keeps compiling.
final class Upcase: StreamProtocol {
    private var transport: ChannelTransport?
    func connectionMade(transport: ChannelTransport) { self.transport = transport }
    func dataReceived(_ data: ByteBuffer) throws {
        try self.transport?.write(data.readableBytesView.map { $0 >= 97 && $0 <= 122 ? $0 - 32 : $0 })
    }
    // Back-pressure: stop reading while the peer is not reading our replies.
    func pauseWriting() { self.transport?.pauseReading() }
    func resumeWriting() { self.transport?.resumeReading() }
}

struct UpcasePlugin: Plugin {
    typealias Options = NoOptions  // `"options"` must be absent or {}
    static let name = "upcase"
    static let summary = "Echoes in upper case"
    static let supportedKinds: Set<ListenerKind> = [.tcp, .unix]
    static func makeProtocolFactory(options: NoOptions, context: PluginContext) throws -> any ProtocolFactory {
        StreamProtocolFactory { Upcase() }
    }
}

struct ReadmePluginTests {
    @Test func theReadmePluginUpcasesAndRegisters() throws {
        let harness = try EmbeddedTransport(protocol: Upcase())
        try harness.send(string: "hello, Tulip")
        #expect(try harness.readOutboundString() == "HELLO, TULIP")
        var registry = TulipPlugins.makeRegistry()
        registry.register(UpcasePlugin.self)
        #expect(
            registry.names == ["chargen", "daytime", "discard", "echo", "files", "starttls-echo", "time", "upcase"]
        )
    }
}
