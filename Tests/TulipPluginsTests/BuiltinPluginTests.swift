import Logging
import NIOCore
import Testing
import Tulip
import TulipDaemon
import TulipTestKit

@testable import TulipPlugins

struct BuiltinPluginTests {
    @Test(arguments: [1, 7, 1024, 70_000])
    func echoSendsBackEveryByteAndClosesAfterEOF(size: Int) throws {
        let harness = try EmbeddedTransport(protocol: EchoProtocol())
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try harness.send(payload)
        #expect(try harness.readOutbound() == payload)
        harness.sendEOF()
        #expect(harness.isClosed)
    }

    @Test func echoKeepsServingAfterShutdownIsRequested() throws {
        let harness = try EmbeddedTransport(protocol: EchoProtocol())
        harness.requestShutdown()
        try harness.send(string: "still here")
        #expect(try harness.readOutboundString() == "still here")
        #expect(!harness.isClosed)
    }

    @Test func discardWritesNothing() throws {
        let harness = try EmbeddedTransport(protocol: DiscardProtocol())
        try harness.send(Array(repeating: 0xFF, count: 10_000))
        #expect(try harness.readOutbound().isEmpty)
        harness.sendEOF()
        #expect(harness.isClosed)
    }

    @Test func chargenProducesTheRFC864Rotation() throws {
        let cycle = ChargenProtocol.makeCycle(allocator: ByteBufferAllocator())
        let lines = String(buffer: cycle).split(separator: "\r\n", omittingEmptySubsequences: false).dropLast()
        #expect(lines.count == 95)
        let printable = (32...126).map { Character(UnicodeScalar(UInt8($0))) }
        for (index, line) in lines.enumerated() {
            let expected = (0..<72).map { printable[(index + $0) % 95] }
            #expect(Array(line) == expected)
        }
    }

    @Test(arguments: [
        (0, DaytimePlugin.Format.rfc3339, "1970-01-01T00:00:00Z"),
        (1_795_705_802, .rfc3339, "2026-11-26T15:10:02Z"),
        (1_795_705_802, .rfc2822, "Thu, 26 Nov 2026 15:10:02 +0000"),
    ])
    func daytimeFormatsTheLine(seconds: Int, format: DaytimePlugin.Format, expected: String) {
        #expect(DaytimePlugin.line(at: seconds, format: format) == expected)
    }

    @Test func daytimeSendsOneCRLFLineAndCloses() throws {
        let harness = try EmbeddedTransport(protocol: DaytimeProtocol(format: .rfc3339))
        let line = try harness.readOutboundString()
        #expect(line.hasSuffix("Z\r\n"))
        #expect(line.count == "2026-11-26T15:10:02Z\r\n".count)
        #expect(harness.isClosed)
    }

    @Test func timeSendsFourBytesSince1900AndCloses() throws {
        #expect(TimePlugin.value(unixSeconds: 0) == 2_208_988_800)
        let harness = try EmbeddedTransport(protocol: TimeProtocol())
        let bytes = try harness.readOutbound()
        #expect(bytes.count == 4)
        let value = bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        #expect(value > 3_900_000_000)  // after 2023
        #expect(harness.isClosed)
    }

    @Test func daytimeRejectsAnUnknownFormatNamingTheOption() throws {
        var registry = PluginRegistry()
        TulipPlugins.register(into: &registry)
        let config = try DaemonConfiguration.parse(
            Array(
                #"{"listeners":[{"name":"d","protocol":"daytime","tcp":{"port":1},"options":{"format":"nope"}}]}"#.utf8
            ),
            file: "t.json"
        )
        #expect(throws: ConfigurationErrors.self) {
            _ = try DaemonPlan(configuration: config, registry: registry, logger: .init(label: "t"))
        }
        do {
            _ = try DaemonPlan(configuration: config, registry: registry, logger: .init(label: "t"))
        } catch let errors as ConfigurationErrors {
            #expect(errors.errors.first?.keyPath == "listeners[0].options.format")
        }
    }
}

struct ReplySourceTests {
    @Test func theRateLimitKeyIgnoresThePortButNotTheHost() throws {
        let a1 = ReplySource(try SocketAddress(ipAddress: "10.1.2.3", port: 1000))
        let a2 = ReplySource(try SocketAddress(ipAddress: "10.1.2.3", port: 2000))
        let b = ReplySource(try SocketAddress(ipAddress: "10.1.2.4", port: 1000))
        let v6a = ReplySource(try SocketAddress(ipAddress: "2001:db8::1", port: 1))
        let v6b = ReplySource(try SocketAddress(ipAddress: "2001:db8::1", port: 2))
        let v6c = ReplySource(try SocketAddress(ipAddress: "2001:db8::2", port: 1))
        #expect(a1 == a2)
        #expect(a1 != b)
        #expect(v6a == v6b)
        #expect(v6a != v6c)
        #expect(
            ReplySource(try SocketAddress(unixDomainSocketPath: "/tmp/a"))
                != ReplySource(try SocketAddress(unixDomainSocketPath: "/tmp/b"))
        )
    }
}
